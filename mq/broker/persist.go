package broker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/telemetry-collector/telemetry-collector/mq/mqcodec"
	"github.com/telemetry-collector/telemetry-collector/mq/mqpb"
	"google.golang.org/protobuf/proto"
)

// Record types of the topic log.
const (
	recPublish byte = 1 // uvarint seq, proto mq.v1.Message
	recAck     byte = 2 // uvarint seq, group name
	recGroup   byte = 3 // uvarint start seq, group name
)

const segSuffix = ".log"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segment is one closed or active file of a topic log. first is the first
// sequence that may be published into it; last is the highest sequence any
// record in it can refer to (known once the segment is closed).
type segment struct {
	path  string
	first int64
	last  int64
}

// topicLog is the append-only log of one topic: a directory of segments
// named by their first sequence. Appends happen under the topic's mutex;
// sync may be called from any goroutine (group commit: concurrent callers
// share one fsync).
type topicLog struct {
	dir      string
	segBytes int64

	mu      sync.Mutex
	cond    *sync.Cond
	f       *os.File
	w       *bufio.Writer
	size    int64 // bytes in the active segment
	written int64 // records appended (monotonic position)
	durable int64 // records known to be fsync'd
	syncing bool
	err     error
	closed  []segment // oldest first
	// oldestLast is closed[0].last (math.MaxInt64 with none), written
	// under mu: dropSegmentsBefore has nothing to do for a head up to it.
	oldestLast atomic.Int64
	active     segment
	scratch    []byte
	// msgScratch holds appendPublish's encoding; guarded by the topic's
	// mutex (appends happen under it), not by mu.
	msgScratch []byte
}

func topicDirName(topic string) string { return "t-" + url.PathEscape(topic) }

func topicFromDirName(name string) (string, bool) {
	if !strings.HasPrefix(name, "t-") {
		return "", false
	}
	t, err := url.PathUnescape(name[2:])
	return t, err == nil && t != ""
}

func segName(first int64) string { return fmt.Sprintf("%020d%s", first, segSuffix) }

// replayFunc receives each valid record during openLog.
type replayFunc func(kind byte, seq int64, name string, msg *mqpb.Message, segFirst int64) error

// openLog opens (creating when absent) the log in dir, replaying every
// record through fn, truncating a torn tail of the last segment.
func openLog(dir string, segBytes int64, fn replayFunc) (*topicLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create topic dir: %w", err)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read topic dir: %w", err)
	}
	var segs []segment
	for _, de := range names {
		n := de.Name()
		if !strings.HasSuffix(n, segSuffix) {
			continue
		}
		first, err := strconv.ParseInt(strings.TrimSuffix(n, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, segment{path: filepath.Join(dir, n), first: first})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	l := &topicLog{dir: dir, segBytes: segBytes}
	l.cond = sync.NewCond(&l.mu)
	for i := range segs {
		good, err := replaySegment(segs[i], fn)
		if err != nil {
			return nil, err
		}
		if i == len(segs)-1 {
			fi, err := os.Stat(segs[i].path)
			if err != nil {
				return nil, fmt.Errorf("stat segment: %w", err)
			}
			if fi.Size() != good {
				if err := os.Truncate(segs[i].path, good); err != nil {
					return nil, fmt.Errorf("truncate torn segment %s: %w", segs[i].path, err)
				}
			}
			l.size = good
		} else {
			segs[i].last = segs[i+1].first - 1
		}
	}
	if len(segs) == 0 {
		segs = append(segs, segment{path: filepath.Join(dir, segName(1)), first: 1})
	}
	l.closed = segs[:len(segs)-1]
	l.setOldestLast()
	l.active = segs[len(segs)-1]
	f, err := os.OpenFile(l.active.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	l.f = f
	l.w = bufio.NewWriterSize(f, 256<<10)
	return l, syncDir(dir)
}

// replaySegment feeds every intact record of seg to fn and returns the byte
// offset after the last intact record.
func replaySegment(seg segment, fn replayFunc) (int64, error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return 0, fmt.Errorf("open segment: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 256<<10)
	var off int64
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return off, nil // EOF or torn header
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		sum := binary.LittleEndian.Uint32(hdr[4:])
		if n == 0 || n > 256<<20 {
			return off, nil
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return off, nil
		}
		if crc32.Checksum(body, castagnoli) != sum {
			return off, nil
		}
		kind := body[0]
		seq, k := binary.Uvarint(body[1:])
		if k <= 0 {
			return off, nil
		}
		rest := body[1+k:]
		var msg *mqpb.Message
		var name string
		switch kind {
		case recPublish:
			msg = &mqpb.Message{}
			if err := proto.Unmarshal(rest, msg); err != nil {
				return off, nil
			}
		case recAck, recGroup:
			name = string(rest)
		default:
			return off, nil
		}
		if err := fn(kind, int64(seq), name, msg, seg.first); err != nil {
			return off, err
		}
		off += 8 + int64(n)
	}
}

func (l *topicLog) appendRecord(kind byte, seq int64, tail []byte) {
	if l.err != nil {
		return
	}
	b := recordHead(l.scratch[:0], kind, seq)
	b = append(b, tail...)
	l.writeRecord(b)
	if cap(b) <= 1<<20 {
		l.scratch = b
	}
}

// recordHead appends the start of a record: room for its length and CRC,
// then kind and seq. writeRecord completes it once the rest is appended.
func recordHead(b []byte, kind byte, seq int64) []byte {
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0, kind)
	return binary.AppendUvarint(b, uint64(seq))
}

// writeRecord fills in the length and CRC of the record b (recordHead and
// its rest) and appends it to the active segment. Caller holds l.mu.
func (l *topicLog) writeRecord(b []byte) {
	if l.err != nil {
		return
	}
	body := b[8:]
	binary.LittleEndian.PutUint32(b[:4], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[4:8], crc32.Checksum(body, castagnoli))
	if _, err := l.w.Write(b); err != nil {
		l.err = fmt.Errorf("append to topic log: %w", err)
	}
	l.size += int64(len(b))
	l.written++
}

// appendPublish appends m and returns its position for waitDurable.
// The record is built in msgScratch, which only appendPublish uses (callers
// hold the topic's mutex, so one runs at a time), outside l.mu.
func (l *topicLog) appendPublish(m *mqpb.Message) (int64, error) {
	b, err := mqcodec.AppendMessage(recordHead(l.msgScratch[:0], recPublish, m.Sequence), m)
	if err != nil {
		return 0, fmt.Errorf("marshal message: %w", err)
	}
	if cap(b) <= 1<<20 {
		l.msgScratch = b
	} else {
		l.msgScratch = nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writeRecord(b)
	return l.written, l.err
}

func (l *topicLog) appendAck(group string, seq int64) {
	l.mu.Lock()
	l.appendRecord(recAck, seq, []byte(group))
	l.mu.Unlock()
}

func (l *topicLog) appendGroup(group string, start int64) {
	l.mu.Lock()
	l.appendRecord(recGroup, start, []byte(group))
	l.mu.Unlock()
}

func (l *topicLog) needsRoll() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segBytes > 0 && l.size >= l.segBytes
}

// roll closes the active segment (after an fsync) and starts one whose first
// sequence is next.
func (l *topicLog) roll(next int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.syncing {
		l.cond.Wait()
	}
	if l.err != nil {
		return l.err
	}
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("flush segment: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("fsync segment: %w", err)
	}
	l.durable = l.written
	l.cond.Broadcast()
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("close segment: %w", err)
	}
	l.active.last = next - 1
	l.closed = append(l.closed, l.active)
	l.setOldestLast()
	l.active = segment{path: filepath.Join(l.dir, segName(next)), first: next}
	f, err := os.OpenFile(l.active.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.err = fmt.Errorf("open segment: %w", err)
		return l.err
	}
	l.f = f
	l.w.Reset(f)
	l.size = 0
	return syncDir(l.dir)
}

// dropSegmentsBefore deletes closed segments whose every record refers to a
// sequence below head (acknowledged by every group).
func (l *topicLog) dropSegmentsBefore(head int64) {
	if head <= l.oldestLast.Load() {
		return // no closed segment ends below head
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for i < len(l.closed) && l.closed[i].last < head {
		_ = os.Remove(l.closed[i].path)
		i++
	}
	l.closed = l.closed[i:]
	l.setOldestLast()
}

// setOldestLast refreshes oldestLast after closed changed. Caller holds
// l.mu (or owns l exclusively).
func (l *topicLog) setOldestLast() {
	if len(l.closed) == 0 {
		l.oldestLast.Store(math.MaxInt64)
	} else {
		l.oldestLast.Store(l.closed[0].last)
	}
}

// sync makes every record appended so far (up to pos; pos <= 0 means all)
// durable. Concurrent callers share one flush+fsync.
func (l *topicLog) sync(pos int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pos <= 0 {
		pos = l.written
	}
	for l.durable < pos {
		if l.err != nil {
			return l.err
		}
		if l.syncing {
			l.cond.Wait()
			continue
		}
		if err := l.w.Flush(); err != nil {
			l.err = fmt.Errorf("flush topic log: %w", err)
			return l.err
		}
		target := l.written
		f := l.f
		l.syncing = true
		l.mu.Unlock()
		err := f.Sync()
		l.mu.Lock()
		l.syncing = false
		l.cond.Broadcast()
		if err != nil {
			l.err = fmt.Errorf("fsync topic log: %w", err)
			return l.err
		}
		if target > l.durable {
			l.durable = target
		}
	}
	return nil
}

func (l *topicLog) close() error {
	err := l.sync(0)
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(err, l.f.Close())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir: %w", err)
	}
	return nil
}
