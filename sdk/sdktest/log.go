package sdktest

import (
	"testing"

	"github.com/hashicorp/go-hclog"
)

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// testLogger logs warnings and errors through t.Log.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "sdktest", Level: hclog.Warn, Output: tlogWriter{t}})
}
