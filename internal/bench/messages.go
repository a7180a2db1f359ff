package bench

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
)

// Messages is a workload's messages in compact form: the payloads, written
// by Build, in an arena outside the Go heap, and what the messages share
// (topic, one metadata map, one timestamp per round) once. Fill makes
// message i just as the workload's Generate makes it (the same id, topic,
// payload bytes, metadata and timestamp); the benchmark's publisher encodes
// it straight from here instead (encodeRequest: the same message, the
// shared fields encoded once).
//
// Why: Generate's 2M one-sample gpu-tel-json messages (~1 KB of Go heap
// each, pointers included) made a live heap of ~2 GB in the bench process,
// so its garbage collector ran rarely, marked millions of objects, and the
// publisher's garbage all landed on never-touched pages (a third of the
// bench process's CPU was page faults).
//
// A Messages is read-only once Build returns, and safe for concurrent use
// until Free; the payloads, metadata map and timestamps it hands out are
// shared and must not be modified, and not used after Free.
type Messages struct {
	topic    string
	idPrefix string            // "bench-<content type>-"
	meta     map[string]string // every message's metadata
	stamps   []*timestamppb.Timestamp
	// roundEnd[r] is one past the index of round r's last message.
	roundEnd []int
	payloads arena
	bytes    int64
	wire     wire // the shared fields, encoded (encodeRequest)
}

// Build generates w's messages for c into a Messages, which the caller
// frees (Free) once nothing uses them.
func (w Workload) Build(c Cluster, topic string) (*Messages, error) {
	m := &Messages{
		topic:    topic,
		idPrefix: "bench-" + w.contentType + "-",
		meta:     map[string]string{"content-type": w.contentType, "records": strconv.Itoa(w.records(c))},
	}
	var err error
	w.gen(c, func(r int, t time.Time, payload []byte) {
		if err != nil {
			return
		}
		for len(m.stamps) <= r {
			m.stamps = append(m.stamps, nil)
			m.roundEnd = append(m.roundEnd, m.payloads.len())
		}
		if r != len(m.stamps)-1 {
			err = fmt.Errorf("bench: %s: round %d after round %d", w.Name, r, len(m.stamps)-1)
			return
		}
		if m.stamps[r] == nil {
			m.stamps[r] = timestamppb.New(t)
		}
		if err = m.payloads.add(payload); err != nil {
			return
		}
		m.roundEnd[r]++
		m.bytes += int64(len(payload))
	})
	if err == nil {
		err = m.buildWire()
	}
	if err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// Len is the number of messages.
func (m *Messages) Len() int { return m.payloads.len() }

// PayloadBytes is the size of all payloads together.
func (m *Messages) PayloadBytes() int64 { return m.bytes }

// Payload returns message i's payload (shared, read-only; capacity
// clipped to its length).
func (m *Messages) Payload(i int) []byte { return m.payloads.get(i) }

// Fill sets msg, a zero mqpb.Message, to message i: a fresh id string,
// the rest shared with every other message (not to be modified).
func (m *Messages) Fill(i int, msg *mqpb.Message) {
	var buf [64]byte
	msg.Id = string(strconv.AppendInt(append(buf[:0], m.idPrefix...), int64(i), 10))
	msg.Topic = m.topic
	msg.Payload = m.payloads.get(i)
	msg.Timestamp = m.stamps[sort.SearchInts(m.roundEnd, i+1)]
	msg.Metadata = m.meta
}

// Free releases the payload arena. Nothing may use a payload afterwards
// (gRPC included: only free after every stream that sent them is done).
func (m *Messages) Free() error { return m.payloads.free() }

// arenaChunk is the size of the arena's chunks; a larger payload gets a
// chunk of its own.
const arenaChunk = 64 << 20

// arena stores payloads back to back in chunks of memory from mapChunk
// (anonymous memory outside the Go heap where the platform has it): the
// garbage collector neither counts nor scans them. A payload never spans
// two chunks. Not safe for concurrent use while add runs; get is safe for
// concurrent use afterwards, until free.
type arena struct {
	chunk  int // chunk size (0: arenaChunk)
	chunks [][]byte
	used   int    // bytes used in the last chunk
	spans  []span // one per payload, in order
}

// span locates a payload: chunks[chunk][off:off+n].
type span struct{ chunk, off, n uint32 }

func (a *arena) len() int { return len(a.spans) }

// add appends a copy of p.
func (a *arena) add(p []byte) error {
	if len(p) > 1<<32-1 {
		return fmt.Errorf("bench: payload of %d bytes", len(p))
	}
	if len(a.chunks) == 0 || a.used+len(p) > len(a.chunks[len(a.chunks)-1]) {
		size := a.chunk
		if size <= 0 {
			size = arenaChunk
		}
		c, err := mapChunk(max(size, len(p)))
		if err != nil {
			return err
		}
		a.chunks = append(a.chunks, c)
		a.used = 0
	}
	n := len(a.chunks) - 1
	copy(a.chunks[n][a.used:], p)
	a.spans = append(a.spans, span{chunk: uint32(n), off: uint32(a.used), n: uint32(len(p))})
	a.used += len(p)
	return nil
}

// get returns payload i, its capacity clipped to its length.
func (a *arena) get(i int) []byte {
	s := a.spans[i]
	end := s.off + s.n
	return a.chunks[s.chunk][s.off:end:end]
}

// free unmaps every chunk; a is empty afterwards.
func (a *arena) free() error {
	var first error
	for _, c := range a.chunks {
		if err := unmapChunk(c); err != nil && first == nil {
			first = err
		}
	}
	*a = arena{}
	return first
}
