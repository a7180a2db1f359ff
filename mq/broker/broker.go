// Package broker implements the mq.v1 message broker (DESIGN section 5):
// topics with consumer groups, acknowledgements with redelivery, dead
// letters, bounded topics that slow publishers down, and an optional
// append-only log per topic. See mq/README.md for the semantics.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// Defaults applied by New for zero Options fields.
const (
	DefaultMaxDeliveries     = 5
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultReapInterval      = 200 * time.Millisecond
	DefaultSegmentBytes      = 64 << 20
	DefaultBatchSize         = 1
	DefaultMaxInFlight       = 1000
	DefaultAckTimeout        = 30 * time.Second
	// MaxMessageBytes is the gRPC message size limit the broker's server and
	// the client package use.
	MaxMessageBytes = 64 << 20
)

// ErrShuttingDown is returned to streams while the broker stops.
var ErrShuttingDown = errors.New("mq broker: shutting down")

// Options configure a Broker. The zero value is a memory-only broker with
// unbounded topics.
type Options struct {
	// DataDir, when set, keeps an append-only log per topic there.
	DataDir string
	// MaxDeliveries is how many deliveries a message gets before it moves to
	// "<topic>.dlq" (default 5).
	MaxDeliveries int
	// MaxTopicBytes and MaxTopicMessages bound each topic's retained
	// messages (0 = unbounded); publishers wait while a topic is full.
	MaxTopicBytes    int64
	MaxTopicMessages int
	// HeartbeatInterval between heartbeats on an idle subscription (5s).
	HeartbeatInterval time.Duration
	// ReapInterval is how often ack deadlines are checked and the logs of
	// topics are flushed (200ms).
	ReapInterval time.Duration
	// SegmentBytes is the size at which a topic log starts a new segment.
	SegmentBytes int64
	// Logger (hclog.NewNullLogger() when nil).
	Logger hclog.Logger
	// Registerer for the broker's Prometheus metrics (none when nil).
	Registerer prometheus.Registerer
}

// Broker is the mq.v1 broker. All methods are safe for concurrent use. Lock
// order: topic.mu (of a topic, then of its ".dlq" topic) before Broker.mu.
type Broker struct {
	opts Options
	log  hclog.Logger
	m    *metrics

	mu       sync.RWMutex
	topics   map[string]*topic
	stopping bool

	done     chan struct{}
	stopOnce sync.Once
	reapDone chan struct{}
	bootID   string
	idSeq    atomic.Uint64
	subSeq   atomic.Uint64
}

// topic is one named queue. All fields below mu are guarded by it.
type topic struct {
	b    *Broker
	name string

	mu      sync.Mutex
	entries []*entry // entries[i] has sequence head+i
	head    int64
	next    int64
	bytes   int64
	groups  map[string]*group
	// groupList holds the groups in creation order (never deleted).
	groupList []*group
	subs      map[uint64]*subscriber
	avail     chan struct{} // closed when messages may be available
	space     chan struct{} // closed when retained messages were dropped
	// availTaken and spaceTaken: a waiter took avail (space) since it was
	// made; only then does a broadcast close and replace it.
	availTaken bool
	spaceTaken bool
	c          topicCounters
	log        *topicLog
	logErr     error
	replaying  bool
}

// New creates a broker, replaying Options.DataDir when set, and starts its
// background reaper. Call Shutdown then Close.
func New(opts Options) (*Broker, error) {
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = DefaultMaxDeliveries
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.ReapInterval <= 0 {
		opts.ReapInterval = DefaultReapInterval
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("mq broker: random id: %w", err)
	}
	b := &Broker{opts: opts, log: opts.Logger, topics: map[string]*topic{},
		done: make(chan struct{}), reapDone: make(chan struct{}), bootID: hex.EncodeToString(rnd[:])}
	b.m = newMetrics(b)
	if opts.Registerer != nil {
		if err := b.m.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("mq broker: register metrics: %w", err)
		}
	}
	if opts.DataDir != "" {
		if err := b.load(); err != nil {
			return nil, err
		}
	}
	go b.reaper()
	return b, nil
}

// newID returns "<bootID>-<n>" for the next n (one allocation).
func (b *Broker) newID() string {
	var buf [64]byte
	id := append(buf[:0], b.bootID...)
	id = append(id, '-')
	id = strconv.AppendUint(id, b.idSeq.Add(1), 10)
	return string(id)
}

// load replays every topic directory under DataDir.
func (b *Broker) load() error {
	if err := os.MkdirAll(b.opts.DataDir, 0o755); err != nil {
		return fmt.Errorf("mq broker: data dir: %w", err)
	}
	des, err := os.ReadDir(b.opts.DataDir)
	if err != nil {
		return fmt.Errorf("mq broker: data dir: %w", err)
	}
	for _, de := range des {
		name, ok := topicFromDirName(de.Name())
		if !ok || !de.IsDir() {
			continue
		}
		if _, err := b.topic(name); err != nil {
			return err
		}
	}
	return nil
}

func validTopic(name string) error {
	if name == "" {
		return errors.New("topic is required")
	}
	if len(name) > 200 {
		return errors.New("topic name longer than 200 bytes")
	}
	return nil
}

// topic returns the named topic, creating (and, with a data dir, replaying)
// it on first use.
func (b *Broker) topic(name string) (*topic, error) {
	if err := validTopic(name); err != nil {
		return nil, err
	}
	b.mu.RLock()
	t := b.topics[name]
	stopping := b.stopping
	b.mu.RUnlock()
	if t != nil {
		return t, nil
	}
	if stopping {
		return nil, ErrShuttingDown
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.topics[name]; t != nil {
		return t, nil
	}
	t = &topic{b: b, name: name, head: 1, next: 1, groups: map[string]*group{},
		subs: map[uint64]*subscriber{}, avail: make(chan struct{}), space: make(chan struct{})}
	if b.opts.DataDir != "" {
		if err := t.openLog(filepath.Join(b.opts.DataDir, topicDirName(name))); err != nil {
			return nil, fmt.Errorf("mq broker: topic %q: %w", name, err)
		}
	}
	b.topics[name] = t
	return t, nil
}

// openLog replays the topic's log into memory and keeps it open.
func (t *topic) openLog(dir string) error {
	t.replaying = true
	defer func() { t.replaying = false }()
	started := false
	l, err := openLog(dir, t.b.opts.SegmentBytes, func(kind byte, seq int64, name string, msg *mqpb.Message, segFirst int64) error {
		if !started {
			started = true
			t.head, t.next = segFirst, segFirst
		}
		switch kind {
		case recPublish:
			if seq != t.next {
				if seq < t.next {
					return nil // duplicate
				}
				// A gap: sequences lost with a deleted segment; keep the numbering.
				for t.next < seq {
					t.entries = append(t.entries, nil)
					t.next++
				}
			}
			msg.Topic, msg.Sequence = t.name, seq
			t.entries = append(t.entries, &entry{msg: msg, size: int64(len(msg.Payload)) + 64})
			t.bytes += int64(len(msg.Payload)) + 64
			t.next++
		case recGroup:
			if _, ok := t.groups[name]; !ok {
				start := max(seq, t.head)
				t.addGroup(newGroup(name, start))
			}
		case recAck:
			g := t.groups[name]
			if g == nil {
				return nil
			}
			if seq >= g.cursor {
				for s := g.cursor; s < seq; s++ {
					if e := t.entryAt(s); e != nil {
						g.addPending(&pend{seq: s, id: e.msg.Id})
					}
				}
				g.cursor = seq + 1
				if e := t.entryAt(seq); e != nil {
					// Make finish see it: pending then acknowledged.
					g.addPending(&pend{seq: seq, id: e.msg.Id})
				}
			}
			t.finish(g, seq)
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.log = l
	// Unacknowledged messages below each group's cursor wait for redelivery.
	for _, g := range t.groups {
		for seq, p := range g.pending {
			p.queued = true
			g.redeliver = append(g.redeliver, seq)
		}
		sortSeqs(g.redeliver)
		t.advanceLow(g)
	}
	t.replaying = false
	t.trim()
	l.dropSegmentsBefore(t.head)
	if len(t.entries) > 0 || len(t.groups) > 0 {
		t.b.log.Info("topic replayed", "topic", t.name, "messages", len(t.entries), "groups", len(t.groups), "next_sequence", t.next)
	}
	return nil
}

// publish stores one message, waiting while the topic is full. It returns
// the stored message and its log position (0 without a data dir).
func (b *Broker) publish(ctx context.Context, m *mqpb.Message) (*mqpb.Message, *topic, int64, error) {
	t, err := b.topic(m.GetTopic())
	if err != nil {
		return nil, nil, 0, err
	}
	size := int64(len(m.GetPayload())) + 64
	t.mu.Lock()
	for t.full(size) {
		ch := t.waitSpace()
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, nil, 0, ctx.Err()
		case <-b.done:
			return nil, nil, 0, ErrShuttingDown
		}
		t.mu.Lock()
	}
	stored, pos, err := t.store(m)
	t.mu.Unlock()
	return stored, t, pos, err
}

// storeLocked stores m ignoring the size limits (dead letters must never
// block the acknowledgement path).
func (t *topic) storeLocked(m *mqpb.Message) (*mqpb.Message, int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.store(m)
}

// acknowledgeElsewhere applies an AcknowledgeRequest that hint did not
// know, searching the other topics where the consumer group exists. It
// returns the topic that knew the id. Caller holds no topic's mutex.
func (b *Broker) acknowledgeElsewhere(hint *topic, req *mqpb.AcknowledgeRequest) *topic {
	for _, t := range b.topicList() {
		if t == hint {
			continue
		}
		t.mu.Lock()
		ok := t.ackReq(req)
		t.mu.Unlock()
		if ok {
			return t
		}
	}
	return nil
}

// acknowledgeBatch applies reqs in order (hint first, then the other topics), counting (and
// logging) the unknown ones, and returns the hint for the next batch. The
// hint topic's mutex is held across consecutive requests it knows, so a
// batch for one topic costs one lock round trip.
func (b *Broker) acknowledgeBatch(hint *topic, reqs []*mqpb.AcknowledgeRequest) *topic {
	locked := false
	for _, req := range reqs {
		if hint != nil {
			if !locked {
				hint.mu.Lock()
				locked = true
			}
			if hint.ackReq(req) {
				continue
			}
			hint.mu.Unlock()
			locked = false
		}
		if t := b.acknowledgeElsewhere(hint, req); t != nil {
			hint = t
		} else {
			b.m.unknownAcks.Inc()
			b.log.Debug("acknowledgement for unknown or already acknowledged message", "consumer_id", req.GetConsumerId(), "message_id", req.GetMessageId())
		}
	}
	if locked {
		hint.mu.Unlock()
	}
	return hint
}

// ackReq applies req if its consumer group exists here and knows the id,
// reporting whether it did. Caller holds t.mu.
func (t *topic) ackReq(req *mqpb.AcknowledgeRequest) bool {
	g := t.groups[req.GetConsumerId()]
	return g != nil && t.ack(g, req.GetMessageId(), req.GetSuccess(), req.GetError())
}

func (b *Broker) topicList() []*topic {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]*topic, 0, len(b.topics))
	for _, t := range b.topics {
		out = append(out, t)
	}
	return out
}

// reaper redelivers expired leases and flushes topic logs.
func (b *Broker) reaper() {
	defer close(b.reapDone)
	tk := time.NewTicker(b.opts.ReapInterval)
	defer tk.Stop()
	for {
		select {
		case <-b.done:
			return
		case now := <-tk.C:
			for _, t := range b.topicList() {
				t.mu.Lock()
				t.expire(now)
				t.mu.Unlock()
				if t.log != nil {
					if err := t.log.sync(0); err != nil {
						b.log.Error("topic log sync failed", "topic", t.name, "error", err)
					}
				}
			}
		}
	}
}

// Serving reports whether the broker accepts work (false once Shutdown ran).
func (b *Broker) Serving() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return !b.stopping
}

// Shutdown stops accepting work and ends every open stream. Safe to call
// more than once.
func (b *Broker) Shutdown() {
	b.stopOnce.Do(func() {
		b.mu.Lock()
		b.stopping = true
		b.mu.Unlock()
		close(b.done)
	})
}

// Close shuts down (if not yet) and flushes and closes every topic log.
func (b *Broker) Close() error {
	b.Shutdown()
	<-b.reapDone
	var errs []error
	for _, t := range b.topicList() {
		t.mu.Lock()
		if t.log != nil {
			if err := t.log.close(); err != nil {
				errs = append(errs, fmt.Errorf("topic %q: %w", t.name, err))
			}
			t.log = nil
		}
		t.logErr = ErrShuttingDown
		t.mu.Unlock()
	}
	return errors.Join(errs...)
}

func sortSeqs(s []int64) { sort.Slice(s, func(i, j int) bool { return s[i] < s[j] }) }
