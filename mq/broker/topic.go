package broker

import (
	"github.com/prometheus/client_golang/prometheus"
	"sort"
	"strconv"
	"time"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// entry is one retained message of a topic. The message is immutable once
// stored: deliveries share its payload and metadata.
type entry struct {
	msg  *mqpb.Message
	size int64
	ts   timestamppb.Timestamp // msg.Timestamp when the broker set it
}

// pend is one message a consumer group has seen but not acknowledged: in
// flight at a subscriber (sub != nil) or waiting for redelivery (sub == nil).
type pend struct {
	seq      int64
	id       string
	sub      *subscriber
	deadline time.Time
	attempts int
	queued   bool
	lastErr  string
	// sameID is the next pending message of the group with the same id
	// (ids need not be unique); group.byID holds the first of the chain.
	sameID *pend
}

// group is a consumer group (all subscribers sharing one consumer_id on one
// topic). Every seq below cursor is either acknowledged or in pending.
// Guarded by the topic's mutex.
type group struct {
	name      string
	cursor    int64 // next never-delivered sequence
	low       int64 // lowest unacknowledged sequence (low water mark)
	pending   map[int64]*pend
	byID      map[string]*pend // first pending message with the id (see pend.sameID)
	redeliver []int64
	members   int
	// nextDue is at most the ack deadline of every message in flight (the
	// reaper skips the group until then).
	nextDue time.Time
}

func newGroup(name string, start int64) *group {
	return &group{name: name, cursor: start, low: start,
		pending: map[int64]*pend{}, byID: map[string]*pend{}}
}

// addPending records p (not yet pending) as pending, last of its id's
// chain.
func (g *group) addPending(p *pend) {
	g.pending[p.seq] = p
	first := g.byID[p.id]
	if first == nil {
		g.byID[p.id] = p
		return
	}
	for first.sameID != nil {
		first = first.sameID
	}
	first.sameID = p
}

// removePending removes p from pending and from its id's chain.
func (g *group) removePending(p *pend) {
	delete(g.pending, p.seq)
	first := g.byID[p.id]
	if first == p {
		if p.sameID == nil {
			delete(g.byID, p.id)
		} else {
			g.byID[p.id] = p.sameID
		}
	} else {
		for q := first; q != nil; q = q.sameID {
			if q.sameID == p {
				q.sameID = p.sameID
				break
			}
		}
	}
	p.sameID = nil
}

// setDeadline sets p's ack deadline, keeping g.nextDue a lower bound.
func (g *group) setDeadline(p *pend, d time.Time) {
	p.deadline = d
	if g.nextDue.IsZero() || d.Before(g.nextDue) {
		g.nextDue = d
	}
}

// subscriber is one open Subscribe stream. Its fields are guarded by the
// topic's mutex except kick, which is a 1-buffered wake-up channel.
// inflight counts the group's pending messages whose sub is this one.
type subscriber struct {
	id          uint64
	group       *group
	batch       int
	maxInFlight int
	ackTimeout  time.Duration
	filter      map[string]string
	inflight    int
	kick        chan struct{}
}

// newSubscriber returns a subscriber with the default settings, not yet
// attached to a group.
func newSubscriber(id uint64) *subscriber {
	return &subscriber{id: id, kick: make(chan struct{}, 1),
		batch: DefaultBatchSize, maxInFlight: DefaultMaxInFlight, ackTimeout: DefaultAckTimeout}
}

func (s *subscriber) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *subscriber) matches(m *mqpb.Message) bool {
	for k, v := range s.filter {
		if m.GetMetadata()[k] != v {
			return false
		}
	}
	return true
}

// topicCounters caches a topic's children of the per-topic counters,
// each looked up on its first increment (so a series appears when it did
// before). Guarded by the topic's mutex.
type topicCounters struct {
	published, delivered, redelivered, acked, nacked prometheus.Counter
}

// counter returns *c, first looking it up in vec by the topic's name.
// Caller holds t.mu.
func (t *topic) counter(c *prometheus.Counter, vec *prometheus.CounterVec) prometheus.Counter {
	if *c == nil {
		*c = vec.WithLabelValues(t.name)
	}
	return *c
}

// entryAt returns the retained entry with sequence seq, or nil.
func (t *topic) entryAt(seq int64) *entry {
	if seq < t.head || seq >= t.next {
		return nil
	}
	return t.entries[seq-t.head]
}

// full reports whether storing a message of size bytes must wait. Caller
// holds t.mu.
func (t *topic) full(size int64) bool {
	n := len(t.entries)
	if t.b.opts.MaxTopicMessages > 0 && n >= t.b.opts.MaxTopicMessages {
		return true
	}
	return t.b.opts.MaxTopicBytes > 0 && n > 0 && t.bytes+size > t.b.opts.MaxTopicBytes
}

// waitAvail returns the channel broadcastAvail closes next, for a
// subscriber loop about to wait. Caller holds t.mu.
func (t *topic) waitAvail() <-chan struct{} {
	t.availTaken = true
	return t.avail
}

// waitSpace returns the channel broadcastSpace closes next, for a publisher
// about to wait. Caller holds t.mu.
func (t *topic) waitSpace() <-chan struct{} {
	t.spaceTaken = true
	return t.space
}

// broadcastAvail wakes every subscriber loop waiting for messages. The
// channel is only replaced when a waiter took it since the last broadcast
// (once per message published otherwise). Caller holds t.mu.
func (t *topic) broadcastAvail() {
	if !t.availTaken {
		return
	}
	t.availTaken = false
	close(t.avail)
	t.avail = make(chan struct{})
}

// broadcastSpace wakes every publisher waiting for space, like
// broadcastAvail. Caller holds t.mu.
func (t *topic) broadcastSpace() {
	if !t.spaceTaken {
		return
	}
	t.spaceTaken = false
	close(t.space)
	t.space = make(chan struct{})
}

// addGroup adds the new group g. Caller holds t.mu.
func (t *topic) addGroup(g *group) {
	t.groups[g.name] = g
	t.groupList = append(t.groupList, g)
}

// getGroup returns the named group, creating it (starting at the oldest
// retained message) when absent. Caller holds t.mu.
func (t *topic) getGroup(name string) *group {
	if g, ok := t.groups[name]; ok {
		return g
	}
	g := newGroup(name, t.head)
	t.addGroup(g)
	if t.log != nil {
		t.log.appendGroup(name, t.head)
	}
	t.b.log.Debug("consumer group created", "topic", t.name, "group", name, "start", t.head)
	return g
}

// take hands up to sub.batch messages to sub, honouring max_in_flight.
// Caller holds t.mu.
func (t *topic) take(sub *subscriber, now time.Time) []*mqpb.Message {
	g := sub.group
	n := sub.batch
	if room := sub.maxInFlight - sub.inflight; room < n {
		n = room
	}
	if n <= 0 {
		return nil
	}
	// The copies handed out share one allocation, sized for what can be
	// taken now.
	if avail := int64(len(g.redeliver)) + t.next - g.cursor; avail < int64(n) {
		n = int(avail)
	}
	if n <= 0 {
		return nil
	}
	out := make([]*mqpb.Message, 0, n)
	copies := make([]mqpb.Message, n)
	for len(out) < n && len(g.redeliver) > 0 {
		seq := g.redeliver[0]
		g.redeliver = g.redeliver[1:]
		p := g.pending[seq]
		if p == nil || p.sub != nil || !p.queued {
			continue
		}
		p.queued = false
		e := t.entryAt(seq)
		if e == nil || !sub.matches(e.msg) {
			t.finish(g, seq)
			continue
		}
		out = append(out, t.deliver(sub, p, e, now, &copies[len(out)]))
	}
	for len(out) < n && g.cursor < t.next {
		seq := g.cursor
		g.cursor++
		e := t.entryAt(seq)
		if e == nil {
			t.advanceLow(g)
			continue
		}
		if !sub.matches(e.msg) {
			// Skipped by the filter: acknowledged for this group.
			if t.log != nil {
				t.log.appendAck(g.name, seq)
			}
			t.advanceLow(g)
			continue
		}
		p := &pend{seq: seq, id: e.msg.GetId()}
		g.addPending(p)
		out = append(out, t.deliver(sub, p, e, now, &copies[len(out)]))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// deliver hands p to sub and returns the message to send, copied into c
// (a zero Message).
func (t *topic) deliver(sub *subscriber, p *pend, e *entry, now time.Time, c *mqpb.Message) *mqpb.Message {
	p.sub = sub
	p.attempts++
	sub.group.setDeadline(p, now.Add(sub.ackTimeout))
	sub.inflight++
	t.counter(&t.c.delivered, t.b.m.delivered).Inc()
	if p.attempts > 1 {
		t.counter(&t.c.redelivered, t.b.m.redelivered).Inc()
	}
	m := e.msg
	c.Id, c.Topic, c.Payload, c.Metadata = m.Id, m.Topic, m.Payload, m.Metadata
	c.Timestamp, c.Priority, c.Sequence = m.Timestamp, m.Priority, m.Sequence
	return c
}

// finish removes seq from g's pending set as acknowledged (or dead-lettered,
// or skipped), logs it, and advances retention. Caller holds t.mu.
func (t *topic) finish(g *group, seq int64) {
	p := g.pending[seq]
	if p == nil {
		return
	}
	if p.sub != nil {
		p.sub.inflight--
		p.sub.wake()
	}
	g.removePending(p)
	if t.log != nil && !t.replaying {
		t.log.appendAck(g.name, seq)
	}
	t.advanceLow(g)
}

// advanceLow moves g's low water mark past acknowledged sequences and trims
// the topic head when every group has moved past it.
func (t *topic) advanceLow(g *group) {
	old := g.low
	for g.low < g.cursor {
		if _, ok := g.pending[g.low]; ok {
			break
		}
		g.low++
	}
	if g.low != old {
		t.trim()
	}
}

// trim drops retained messages that every group has acknowledged.
func (t *topic) trim() {
	if len(t.groupList) == 0 {
		return
	}
	head := t.next
	for _, g := range t.groupList {
		if g.low < head {
			head = g.low
		}
	}
	if head <= t.head {
		return
	}
	k := int(head - t.head)
	for i := 0; i < k; i++ {
		if e := t.entries[i]; e != nil {
			t.bytes -= e.size
		}
		t.entries[i] = nil
	}
	t.entries = t.entries[k:]
	t.head = head
	if !t.replaying {
		t.broadcastSpace()
		if t.log != nil {
			t.log.dropSegmentsBefore(head)
		}
	}
}

// release takes p away from its subscriber and either queues it for
// redelivery or, after MaxDeliveries attempts, dead-letters it.
func (t *topic) release(g *group, p *pend, reason string) {
	if p.sub != nil {
		p.sub.inflight--
		p.sub.wake()
		p.sub = nil
	}
	if reason != "" {
		p.lastErr = reason
	}
	if p.attempts >= t.b.opts.MaxDeliveries {
		t.deadLetter(g, p)
		return
	}
	if !p.queued {
		p.queued = true
		g.redeliver = append(g.redeliver, p.seq)
	}
	t.broadcastAvail()
}

// deadLetter copies the message to "<topic>.dlq" and acknowledges it for g.
func (t *topic) deadLetter(g *group, p *pend) {
	e := t.entryAt(p.seq)
	if e != nil {
		md := make(map[string]string, len(e.msg.Metadata)+6)
		for k, v := range e.msg.Metadata {
			md[k] = v
		}
		md["dlq-source-topic"] = t.name
		md["dlq-consumer-group"] = g.name
		md["dlq-error"] = p.lastErr
		md["dlq-delivery-count"] = strconv.Itoa(p.attempts)
		md["dlq-original-sequence"] = strconv.FormatInt(p.seq, 10)
		md["dlq-original-id"] = e.msg.Id
		m := &mqpb.Message{Id: e.msg.Id, Payload: e.msg.Payload, Metadata: md,
			Timestamp: e.msg.Timestamp, Priority: e.msg.Priority}
		dlq, err := t.b.topic(t.name + ".dlq")
		if err == nil {
			_, _, err = dlq.storeLocked(m)
		}
		if err != nil {
			// Keep the message pending rather than lose it.
			t.b.log.Error("dead-letter failed; message kept for redelivery", "topic", t.name, "seq", p.seq, "error", err)
			p.queued = true
			g.redeliver = append(g.redeliver, p.seq)
			return
		}
		t.b.m.deadLettered.WithLabelValues(t.name).Inc()
		t.b.log.Warn("message dead-lettered", "topic", t.name, "group", g.name, "seq", p.seq, "id", e.msg.Id, "deliveries", p.attempts, "error", p.lastErr)
	}
	t.finish(g, p.seq)
}

// ack applies one AcknowledgeRequest for g. It reports whether the id was
// known (pending) in the group. Caller holds t.mu.
func (t *topic) ack(g *group, id string, success bool, errText string) bool {
	p := g.byID[id]
	if p == nil {
		return false
	}
	if success {
		t.counter(&t.c.acked, t.b.m.acked).Inc()
		t.finish(g, p.seq)
		return true
	}
	t.counter(&t.c.nacked, t.b.m.nacked).Inc()
	if errText == "" {
		errText = "nack"
	}
	t.release(g, p, errText)
	return true
}

// renew pushes out the ack deadline of every message in flight at sub.
func (t *topic) renew(sub *subscriber, now time.Time) {
	if sub.inflight == 0 {
		return
	}
	d := now.Add(sub.ackTimeout)
	for _, p := range sub.group.pending {
		if p.sub == sub {
			sub.group.setDeadline(p, d)
		}
	}
}

// detach releases every message in flight at sub (its stream ended) for
// immediate redelivery to other members.
func (t *topic) detach(sub *subscriber) {
	g := sub.group
	seqs := make([]int64, 0, sub.inflight)
	for seq, p := range g.pending {
		if p.sub == sub {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		if p := g.pending[seq]; p != nil && p.sub == sub {
			t.release(g, p, "subscriber disconnected")
		}
	}
	g.members--
	delete(t.subs, sub.id)
}

// expire releases messages whose ack deadline has passed.
func (t *topic) expire(now time.Time) {
	for _, g := range t.groups {
		if g.nextDue.IsZero() || !now.After(g.nextDue) {
			continue // nothing in flight can be due yet
		}
		var due []*pend
		var next time.Time
		for _, p := range g.pending {
			if p.sub == nil {
				continue
			}
			if now.After(p.deadline) {
				due = append(due, p)
			} else if next.IsZero() || p.deadline.Before(next) {
				next = p.deadline
			}
		}
		g.nextDue = next
		sort.Slice(due, func(i, j int) bool { return due[i].seq < due[j].seq })
		for _, p := range due {
			t.b.log.Debug("ack timeout, redelivering", "topic", t.name, "group", g.name, "seq", p.seq)
			t.release(g, p, "ack timeout")
		}
	}
}

// store appends m (which the caller no longer touches) as the next message,
// without checking the size limits (the caller does). Caller holds t.mu.
func (t *topic) store(m *mqpb.Message) (*mqpb.Message, int64, error) {
	if t.logErr != nil {
		return nil, 0, t.logErr
	}
	seq := t.next
	if m.Id == "" {
		m.Id = t.b.newID()
	}
	e := &entry{msg: m, size: int64(len(m.Payload)) + 64}
	if m.Timestamp == nil {
		now := time.Now()
		e.ts.Seconds, e.ts.Nanos = now.Unix(), int32(now.Nanosecond())
		m.Timestamp = &e.ts
	}
	m.Topic = t.name
	m.Sequence = seq
	var pos int64
	if t.log != nil {
		var err error
		pos, err = t.log.appendPublish(m)
		if err != nil {
			t.logErr = err
			return nil, 0, err
		}
	}
	t.next++
	t.entries = append(t.entries, e)
	t.bytes += e.size
	t.counter(&t.c.published, t.b.m.published).Inc()
	if t.log != nil && t.log.needsRoll() {
		t.roll()
	}
	t.broadcastAvail()
	return m, pos, nil
}

// roll starts a new log segment, recording every group at its top so the
// group survives deletion of older segments.
func (t *topic) roll() {
	if err := t.log.roll(t.next); err != nil {
		t.logErr = err
		t.b.log.Error("log segment roll failed", "topic", t.name, "error", err)
		return
	}
	for _, g := range t.groups {
		start := g.low
		t.log.appendGroup(g.name, start)
	}
}
