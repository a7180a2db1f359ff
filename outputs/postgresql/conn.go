package postgresql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// connString returns the connection string from the configuration, in this
// order: connection; else the host/port/user/password/dbname/sslmode keys
// (libpq key=value form); else $DATABASE_URL; else "" (pgx then applies the
// PG* environment variables and libpq defaults to whatever is not set).
func (o *Output) connString() string {
	if strings.TrimSpace(o.Connection) != "" {
		return o.Connection
	}
	var kv []string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, k+"="+quoteKV(v))
		}
	}
	add("host", o.Host)
	if o.Port != 0 {
		add("port", strconv.Itoa(o.Port))
	}
	add("user", o.User)
	add("password", o.Password)
	add("dbname", o.DBName)
	add("sslmode", o.SSLMode)
	if len(kv) > 0 {
		return strings.Join(kv, " ")
	}
	return o.getenv("DATABASE_URL")
}

// quoteKV quotes a libpq key=value value.
func quoteKV(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\`) {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// poolConfig parses the connection settings. Its errors are masked.
func (o *Output) poolConfig() (*pgxpool.Config, error) {
	cs := o.connString()
	cfg, err := pgxpool.ParseConfig(cs)
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("outputs.postgresql: connection settings: %w", o.mask(err)))
	}
	if cfg.ConnConfig.Password != "" {
		o.secrets = append(o.secrets, cfg.ConnConfig.Password)
	}
	cfg.MaxConns = int32(o.MaxConnections)
	if o.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout.D()
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	// Partition bounds are read back as text: keep them in UTC.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "telemetry-collector"
	}
	return cfg, nil
}

var (
	urlPassword = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)
	kvPassword  = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
)

// mask removes every known password from err's text, keeping err's chain for
// errors.Is/As.
func (o *Output) mask(err error) error {
	if err == nil {
		return nil
	}
	return &maskedError{err: err, secrets: o.secrets}
}

// maskText removes passwords from s: the configured ones and anything that
// looks like a URL password or a password=... key.
func maskText(s string, secrets []string) string {
	for _, p := range secrets {
		if p != "" {
			s = strings.ReplaceAll(s, p, "xxxxx")
		}
	}
	s = urlPassword.ReplaceAllString(s, "${1}xxxxx@")
	s = kvPassword.ReplaceAllString(s, "${1}xxxxx")
	return s
}

type maskedError struct {
	err     error
	secrets []string
}

func (e *maskedError) Error() string { return maskText(e.err.Error(), e.secrets) }
func (e *maskedError) Unwrap() error { return e.err }

// connectError turns a failure to reach the server into an error that says
// what to do. Connection failures are retryable; authentication and missing
// databases are not fixed by retrying.
func (o *Output) connectError(cfg *pgxpool.Config, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	addr := net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
	if strings.HasPrefix(cfg.ConnConfig.Host, "/") {
		addr = cfg.ConnConfig.Host
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		hint := "check the connection settings"
		permanent := false
		switch {
		case strings.HasPrefix(pgErr.Code, "28"):
			hint, permanent = "check user and password", true
		case pgErr.Code == "3D000":
			hint, permanent = "create the database or fix dbname", true
		case strings.HasPrefix(pgErr.Code, "57") || strings.HasPrefix(pgErr.Code, "53"):
			hint = "the server is starting, stopping or full; retrying"
		}
		e := fmt.Errorf("outputs.postgresql: connect %s: %s (SQLSTATE %s) (%s): %w", addr, pgErr.Message, pgErr.Code, hint, o.mask(err))
		e = &maskedError{err: e, secrets: o.secrets}
		if permanent {
			return sdk.Permanent(e)
		}
		return e
	}
	cause := "unreachable"
	var errno syscall.Errno
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &errno):
		cause = errno.Error()
	case errors.As(err, &dnsErr):
		cause = dnsErr.Error()
	case pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded):
		cause = "timeout"
	default:
		cause = err.Error()
	}
	return &maskedError{
		err:     &connErr{msg: fmt.Sprintf("outputs.postgresql: connect %s: %s (is PostgreSQL running? set DATABASE_URL or the output's connection)", addr, cause), err: err},
		secrets: o.secrets,
	}
}

type connErr struct {
	msg string
	err error
}

func (e *connErr) Error() string { return e.msg }
func (e *connErr) Unwrap() error { return e.err }

// errKind classifies a database error.
type errKind int

const (
	errRetryable errKind = iota // connection trouble, conflicts between sessions, server going down
	errData                     // a row's content was refused: isolate and reject it
	errPermanent                // schema or permission problem: retrying will not help
)

func classify(err error) errKind {
	if err == nil {
		return errRetryable
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "22": // data exception
			return errData
		case "23": // integrity constraint violation
			return errData
		case "08", "40", "53", "55", "57", "58", "XX":
			// connection, serialization/deadlock, resources, lock not
			// available, admin/crash shutdown and cannot connect now,
			// system error, internal error
			return errRetryable
		case "25":
			return errRetryable // transaction state: retrying in a fresh transaction helps
		default:
			return errPermanent
		}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errRetryable
	}
	// Network errors, closed connections, timeouts, cancelled contexts.
	return errRetryable
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

func isNoPartition(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23514" && strings.HasPrefix(pgErr.Message, "no partition of relation")
}

// redactURL is used when a connection string must be shown.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
	}
	return maskText(s, nil)
}
