package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
)

// Hand-written protobuf encoding of the messages that carry batches
// (pluginpb.Batch, and ProcessResult, which holds them and, for process
// groups, the per-member fields 5-10).
//
// proto.Marshal and proto.Unmarshal walk these messages reflectively, size
// them in a pass of their own and allocate every packed column afresh for
// each message received: ~20% of each side's CPU in a scrape-shaped
// processor round trip. AppendBatch / UnmarshalBatch (and the
// ProcessResult forms) write and read the same bytes directly:
//
//   - Marshal output is byte for byte proto.Marshal's (fields in number
//     order, zero values and empty repeated fields left out, packed
//     columns); a message with unknown fields is marshalled by proto.
//   - Unmarshal gives what proto.Unmarshal gives (proto.Equal), errors
//     included: anything it does not handle itself (unknown fields, a
//     known field with another wire type, unpacked repeated scalars of a
//     Batch, malformed input) makes it start over with proto.Unmarshal.
//     ProcessResult's repeated scalars (5, 7-10) are read in both forms,
//     packed and unpacked, as proto.Unmarshal reads them.
//   - The point and series-id columns of an unmarshalled Batch come from a
//     pool; RecycleBatch hands them back once the batch is decoded (see
//     there for the rule).
//
// Both are checked against proto differentially, and by FuzzBatchCodec.

// Field numbers of pluginpb.Batch and ProcessResult (plugin.proto).
const (
	fBatchID         = 1
	fBatchStrings    = 2
	fBatchSeries     = 3
	fBatchPtSeries   = 4
	fBatchPtTime     = 5
	fBatchPtValue    = 6
	fBatchRejects    = 7
	fBatchEnd        = 8
	fBatchRunError   = 9
	fBatchReset      = 10
	fBatchStringBase = 11
	fBatchSeriesBase = 12
	fBatchSeriesIDs  = 13

	fResultID            = 1
	fResultBatches       = 2
	fResultError         = 3
	fResultPermanent     = 4
	fResultBatchMembers  = 5 // packed uint32
	fResultErrorMember   = 6
	fResultMemberCalls   = 7 // packed uint64, as 8-10
	fResultMemberPoints  = 8
	fResultMemberNanos   = 9
	fResultMemberRetries = 10
)

// Column pools. A pooled column is a slice of at least the length asked
// for; whoever took it owns it until it is put back. Pools hold *[]T; the
// emptied boxes are kept for the next put, so that neither way allocates.
type colPool[T any] struct{ cols, boxes sync.Pool }

func (c *colPool[T]) get(n int) []T {
	if v, ok := c.cols.Get().(*[]T); ok {
		s := *v
		*v = nil
		c.boxes.Put(v)
		if cap(s) >= n {
			return s[:n]
		}
		// Too small for this batch: dropped, the garbage collector takes it.
	}
	return make([]T, n, n+n/8)
}

func (c *colPool[T]) put(s []T) {
	if cap(s) == 0 {
		return
	}
	v, ok := c.boxes.Get().(*[]T)
	if !ok {
		v = new([]T)
	}
	*v = s[:0]
	c.cols.Put(v)
}

var (
	u32Pool colPool[uint32]
	i64Pool colPool[int64]
	f64Pool colPool[float64]
)

// RecycleBatch hands the series-id and point columns of m (as
// UnmarshalBatch and the codec fill them) back to the pool and clears them
// in m. Call it only when nothing refers to those columns any more: a
// receive loop calls it right after StreamDecoder.Decode, which copies
// everything it keeps out of the message, and before anything else can see
// the message. Calling it on a message whose columns came from elsewhere
// is safe (they are simply pooled); m's other fields are left alone.
func RecycleBatch(m *pluginpb.Batch) {
	if m == nil {
		return
	}
	u32Pool.put(m.SeriesIds)
	u32Pool.put(m.PointSeries)
	i64Pool.put(m.PointTime)
	f64Pool.put(m.PointValue)
	m.SeriesIds, m.PointSeries, m.PointTime, m.PointValue = nil, nil, nil, nil
}

// RecycleProcessResult is RecycleBatch for every batch of r. The
// per-member fields of a process group (batch_members, member_calls...)
// are plain allocations, never pooled: r keeps them.
func RecycleProcessResult(r *pluginpb.ProcessResult) {
	for _, b := range r.GetBatches() {
		RecycleBatch(b)
	}
}

// --- marshalling ---

func sizeVarint32(v uint32) int {
	// 1 + floor((bits-1)/7), bits >= 1.
	return int(9*uint32(bits.Len32(v|1))+64) / 64
}

func sizePackedU32(s []uint32) int {
	n := len(s)
	for _, v := range s {
		if v >= 1<<7 {
			n += sizeVarint32(v) - 1
		}
	}
	return n
}

func sizePackedU64(s []uint64) int {
	n := 0
	for _, v := range s {
		n += protowire.SizeVarint(v)
	}
	return n
}

func sizeLen(tagSize, n int) int { return tagSize + protowire.SizeVarint(uint64(n)) + n }

// batchSize is the encoded size of m, its packed uint32 columns' payload
// sizes returned for the writer.
func batchSize(m *pluginpb.Batch) (size int, ser, pts, ids int) {
	if m.Id != 0 {
		size += 1 + protowire.SizeVarint(m.Id)
	}
	for _, s := range m.Strings {
		size += sizeLen(1, len(s))
	}
	if len(m.Series) > 0 {
		ser = sizePackedU32(m.Series)
		size += sizeLen(1, ser)
	}
	if len(m.PointSeries) > 0 {
		pts = sizePackedU32(m.PointSeries)
		size += sizeLen(1, pts)
	}
	if len(m.PointTime) > 0 {
		size += sizeLen(1, 8*len(m.PointTime))
	}
	if len(m.PointValue) > 0 {
		size += sizeLen(1, 8*len(m.PointValue))
	}
	for _, r := range m.Rejects {
		size += sizeLen(1, proto.Size(r))
	}
	if m.End {
		size += 2
	}
	if m.RunError != "" {
		size += sizeLen(1, len(m.RunError))
	}
	if m.ResetDictionary {
		size += 2
	}
	if m.StringBase != 0 {
		size += 1 + sizeVarint32(m.StringBase)
	}
	if m.SeriesBase != 0 {
		size += 1 + sizeVarint32(m.SeriesBase)
	}
	if len(m.SeriesIds) > 0 {
		ids = sizePackedU32(m.SeriesIds)
		size += sizeLen(1, ids)
	}
	return size, ser, pts, ids
}

// BatchSize is the encoded size of m, as proto.Size reports it.
func BatchSize(m *pluginpb.Batch) int {
	if m == nil || hasUnknown(m) {
		return proto.Size(m)
	}
	n, _, _, _ := batchSize(m)
	return n
}

func hasUnknown(m proto.Message) bool { return len(m.ProtoReflect().GetUnknown()) > 0 }

// appendPackedU32 appends the varints of s, which take n bytes
// (sizePackedU32), to b.
func appendPackedU32(b []byte, s []uint32, n int) []byte {
	off := len(b)
	b = grown(b, n)
	out := b[off : off+n]
	j := 0
	for _, v := range s {
		if v < 0x80 && j < len(out) {
			out[j] = byte(v)
			j++
			continue
		}
		if v < 1<<14 && j+1 < len(out) {
			out[j] = byte(v) | 0x80
			out[j+1] = byte(v >> 7)
			j += 2
			continue
		}
		for v >= 0x80 {
			out[j] = byte(v) | 0x80
			v >>= 7
			j++
		}
		out[j] = byte(v)
		j++
	}
	return b
}

// appendPackedU64 appends the varints of s to b.
func appendPackedU64(b []byte, s []uint64) []byte {
	for _, v := range s {
		if v < 0x80 {
			b = append(b, byte(v))
			continue
		}
		b = protowire.AppendVarint(b, v)
	}
	return b
}

// fixed64 are the column types protobuf encodes as packed fixed64.
type fixed64 interface{ ~int64 | ~float64 }

// appendFixed64s appends the little-endian fixed64 bytes of s to b (bits
// gives a value's 64 bits: the int64 itself, the IEEE 754 bits of a
// float64).
func appendFixed64s[T fixed64](b []byte, s []T, bits func(T) uint64) []byte {
	off := len(b)
	n := 8 * len(s)
	b = grown(b, n)
	out := b[off : off+n]
	if littleEndian {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), n))
		return b
	}
	for i, v := range s {
		binary.LittleEndian.PutUint64(out[8*i:], bits(v))
	}
	return b
}

func int64Bits(v int64) uint64     { return uint64(v) }
func int64FromBits(x uint64) int64 { return int64(x) }

// littleEndian: the machine's int64 and float64 are laid out as protobuf's
// fixed64 (then columns are copied byte for byte; the bytes are only
// copied, never aliased).
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// grown extends b by n bytes (their contents to be overwritten).
func grown(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		return append(b, make([]byte, n)...)
	}
	return b[:len(b)+n]
}

func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return append(b, byte(uint64(num)<<3|uint64(typ)))
}

func appendLenTag(b []byte, num protowire.Number, n int) []byte {
	b = appendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// AppendBatch appends m's protobuf encoding (proto.Marshal's bytes) to b.
func AppendBatch(b []byte, m *pluginpb.Batch) ([]byte, error) {
	if m == nil || hasUnknown(m) {
		return proto.MarshalOptions{}.MarshalAppend(b, m)
	}
	_, ser, pts, ids := batchSize(m)
	return appendBatch(b, m, ser, pts, ids)
}

func appendBatch(b []byte, m *pluginpb.Batch, ser, pts, ids int) ([]byte, error) {
	if m.Id != 0 {
		b = appendTag(b, fBatchID, protowire.VarintType)
		b = protowire.AppendVarint(b, m.Id)
	}
	for _, s := range m.Strings {
		b = appendLenTag(b, fBatchStrings, len(s))
		b = append(b, s...)
	}
	if len(m.Series) > 0 {
		b = appendLenTag(b, fBatchSeries, ser)
		b = appendPackedU32(b, m.Series, ser)
	}
	if len(m.PointSeries) > 0 {
		b = appendLenTag(b, fBatchPtSeries, pts)
		b = appendPackedU32(b, m.PointSeries, pts)
	}
	if len(m.PointTime) > 0 {
		b = appendLenTag(b, fBatchPtTime, 8*len(m.PointTime))
		b = appendFixed64s(b, m.PointTime, int64Bits)
	}
	if len(m.PointValue) > 0 {
		b = appendLenTag(b, fBatchPtValue, 8*len(m.PointValue))
		b = appendFixed64s(b, m.PointValue, math.Float64bits)
	}
	for _, r := range m.Rejects {
		b = appendLenTag(b, fBatchRejects, proto.Size(r))
		var err error
		if b, err = (proto.MarshalOptions{}).MarshalAppend(b, r); err != nil {
			return b, err
		}
	}
	if m.End {
		b = append(appendTag(b, fBatchEnd, protowire.VarintType), 1)
	}
	if m.RunError != "" {
		b = appendLenTag(b, fBatchRunError, len(m.RunError))
		b = append(b, m.RunError...)
	}
	if m.ResetDictionary {
		b = append(appendTag(b, fBatchReset, protowire.VarintType), 1)
	}
	if m.StringBase != 0 {
		b = appendTag(b, fBatchStringBase, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.StringBase))
	}
	if m.SeriesBase != 0 {
		b = appendTag(b, fBatchSeriesBase, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.SeriesBase))
	}
	if len(m.SeriesIds) > 0 {
		b = appendLenTag(b, fBatchSeriesIDs, ids)
		b = appendPackedU32(b, m.SeriesIds, ids)
	}
	return b, nil
}

// processResultSize is r's encoded size; sizes receives each batch's size
// and packed column sizes (4 ints a batch) for the writer.
func processResultSize(r *pluginpb.ProcessResult, sizes []int) (int, []int) {
	size := 0
	if r.Id != 0 {
		size += 1 + protowire.SizeVarint(r.Id)
	}
	for _, m := range r.Batches {
		n, ser, pts, ids := batchSize(m)
		sizes = append(sizes, n, ser, pts, ids)
		size += sizeLen(1, n)
	}
	if r.Error != "" {
		size += sizeLen(1, len(r.Error))
	}
	if r.Permanent {
		size += 2
	}
	if len(r.BatchMembers) > 0 {
		size += sizeLen(1, sizePackedU32(r.BatchMembers))
	}
	if r.ErrorMember != 0 {
		size += 1 + sizeVarint32(r.ErrorMember)
	}
	for _, s := range memberColumns(r) {
		if len(s) > 0 {
			size += sizeLen(1, sizePackedU64(s))
		}
	}
	return size, sizes
}

// memberColumns are r's per-member columns, fields fResultMemberCalls
// and on, in field order.
func memberColumns(r *pluginpb.ProcessResult) [4][]uint64 {
	return [4][]uint64{r.MemberCalls, r.MemberPoints, r.MemberNanos, r.MemberRetries}
}

func processResultPlain(r *pluginpb.ProcessResult) bool {
	if r == nil || hasUnknown(r) {
		return false
	}
	for _, m := range r.Batches {
		if m == nil || hasUnknown(m) {
			return false
		}
	}
	return true
}

// ProcessResultSize is the encoded size of r, as proto.Size reports it.
func ProcessResultSize(r *pluginpb.ProcessResult) int {
	if !processResultPlain(r) {
		return proto.Size(r)
	}
	n, _ := processResultSize(r, nil)
	return n
}

// AppendProcessResult appends r's protobuf encoding (proto.Marshal's
// bytes) to b.
func AppendProcessResult(b []byte, r *pluginpb.ProcessResult) ([]byte, error) {
	if !processResultPlain(r) {
		return proto.MarshalOptions{}.MarshalAppend(b, r)
	}
	var small [16]int
	_, sizes := processResultSize(r, small[:0])
	return appendProcessResult(b, r, sizes)
}

func appendProcessResult(b []byte, r *pluginpb.ProcessResult, sizes []int) ([]byte, error) {
	if r.Id != 0 {
		b = appendTag(b, fResultID, protowire.VarintType)
		b = protowire.AppendVarint(b, r.Id)
	}
	for i, m := range r.Batches {
		sz := sizes[4*i:]
		b = appendLenTag(b, fResultBatches, sz[0])
		var err error
		if b, err = appendBatch(b, m, sz[1], sz[2], sz[3]); err != nil {
			return b, err
		}
	}
	if r.Error != "" {
		b = appendLenTag(b, fResultError, len(r.Error))
		b = append(b, r.Error...)
	}
	if r.Permanent {
		b = append(appendTag(b, fResultPermanent, protowire.VarintType), 1)
	}
	if len(r.BatchMembers) > 0 {
		n := sizePackedU32(r.BatchMembers)
		b = appendLenTag(b, fResultBatchMembers, n)
		b = appendPackedU32(b, r.BatchMembers, n)
	}
	if r.ErrorMember != 0 {
		b = appendTag(b, fResultErrorMember, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.ErrorMember))
	}
	for i, s := range memberColumns(r) {
		if len(s) > 0 {
			b = appendLenTag(b, fResultMemberCalls+protowire.Number(i), sizePackedU64(s))
			b = appendPackedU64(b, s)
		}
	}
	return b, nil
}

// --- unmarshalling ---

// errSlow: the fast decoder met something it leaves to proto.Unmarshal.
var errSlow = fmt.Errorf("wire: not handled by the fast decoder")

// UnmarshalBatch decodes b into m (reset first) as proto.Unmarshal does.
// m does not keep b: strings are copied, columns decoded into slices from
// the column pool (see RecycleBatch).
func UnmarshalBatch(b []byte, m *pluginpb.Batch) error {
	proto.Reset(m)
	if err := unmarshalBatch(b, m); err != nil {
		RecycleBatch(m)
		return proto.Unmarshal(b, m)
	}
	return nil
}

// UnmarshalProcessResult decodes b into r (reset first) as proto.Unmarshal
// does, its batches as UnmarshalBatch does.
func UnmarshalProcessResult(b []byte, r *pluginpb.ProcessResult) error {
	proto.Reset(r)
	if err := unmarshalProcessResult(b, r); err != nil {
		RecycleProcessResult(r)
		proto.Reset(r)
		return proto.Unmarshal(b, r)
	}
	return nil
}

func unmarshalProcessResult(b []byte, r *pluginpb.ProcessResult) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errSlow
		}
		b = b[n:]
		switch {
		case num == fResultID && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errSlow
			}
			r.Id, b = v, b[n:]
		case num == fResultBatches && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errSlow
			}
			m := &pluginpb.Batch{}
			r.Batches = append(r.Batches, m)
			if err := unmarshalBatch(v, m); err != nil {
				return err
			}
			b = b[n:]
		case num == fResultError && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !utf8.Valid(v) {
				return errSlow
			}
			r.Error, b = string(v), b[n:]
		case num == fResultPermanent && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errSlow
			}
			r.Permanent, b = protowire.DecodeBool(v), b[n:]
		case num == fResultErrorMember && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errSlow
			}
			r.ErrorMember, b = uint32(v), b[n:]
		case num == fResultBatchMembers || (num >= fResultMemberCalls && num <= fResultMemberRetries):
			// Repeated scalars: packed (as proto.Marshal writes them) or
			// one value per field (as proto.Unmarshal also reads them).
			var v []byte
			var x uint64
			switch typ {
			case protowire.BytesType:
				v, n = protowire.ConsumeBytes(b)
			case protowire.VarintType:
				x, n = protowire.ConsumeVarint(b)
			default:
				return errSlow
			}
			if n < 0 {
				return errSlow
			}
			b = b[n:]
			ok := true
			if num == fResultBatchMembers {
				if typ == protowire.VarintType {
					r.BatchMembers = append(r.BatchMembers, uint32(x))
				} else {
					r.BatchMembers, ok = consumePackedU32(r.BatchMembers, v, false)
				}
				if !ok {
					return errSlow
				}
				continue
			}
			var col *[]uint64
			switch num {
			case fResultMemberCalls:
				col = &r.MemberCalls
			case fResultMemberPoints:
				col = &r.MemberPoints
			case fResultMemberNanos:
				col = &r.MemberNanos
			default:
				col = &r.MemberRetries
			}
			if typ == protowire.VarintType {
				*col = append(*col, x)
			} else if *col, ok = consumePackedU64(*col, v); !ok {
				return errSlow
			}
		default:
			return errSlow
		}
	}
	return nil
}

// consumeTag is protowire.ConsumeTag with the one-byte tags of these
// messages inlined.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] < 0x80 && b[0]>>3 != 0 {
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

func unmarshalBatch(b []byte, m *pluginpb.Batch) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errSlow
		}
		b = b[n:]
		if typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errSlow
			}
			b = b[n:]
			switch num {
			case fBatchID:
				m.Id = v
			case fBatchEnd:
				m.End = protowire.DecodeBool(v)
			case fBatchReset:
				m.ResetDictionary = protowire.DecodeBool(v)
			case fBatchStringBase:
				m.StringBase = uint32(v)
			case fBatchSeriesBase:
				m.SeriesBase = uint32(v)
			default:
				return errSlow
			}
			continue
		}
		if typ != protowire.BytesType {
			return errSlow
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errSlow
		}
		b = b[n:]
		var ok bool
		switch num {
		case fBatchStrings:
			if !utf8.Valid(v) {
				return errSlow
			}
			m.Strings = append(m.Strings, string(v))
			ok = true
		case fBatchSeries:
			m.Series, ok = consumePackedU32(m.Series, v, false)
		case fBatchPtSeries:
			m.PointSeries, ok = consumePackedU32(m.PointSeries, v, true)
		case fBatchSeriesIDs:
			m.SeriesIds, ok = consumePackedU32(m.SeriesIds, v, true)
		case fBatchPtTime:
			m.PointTime, ok = consumeFixed64s(m.PointTime, v, &i64Pool, int64FromBits)
		case fBatchPtValue:
			m.PointValue, ok = consumeFixed64s(m.PointValue, v, &f64Pool, math.Float64frombits)
		case fBatchRejects:
			r := &pluginpb.Reject{}
			if proto.Unmarshal(v, r) != nil {
				return errSlow
			}
			m.Rejects = append(m.Rejects, r)
			ok = true
		case fBatchRunError:
			if !utf8.Valid(v) {
				return errSlow
			}
			m.RunError = string(v)
			ok = true
		}
		if !ok {
			return errSlow
		}
	}
	return nil
}

// consumePackedU32 appends the packed varints of v to s (from the column
// pool when s is empty and pooled is set), reporting false for malformed
// input.
func consumePackedU32(s []uint32, v []byte, pooled bool) ([]uint32, bool) {
	if len(v) == 0 {
		return s, true
	}
	// Every varint takes at least one byte: len(v) values at most.
	off := len(s)
	if cap(s)-off < len(v) {
		var ns []uint32
		if pooled && off == 0 {
			ns = u32Pool.get(len(v))
		} else {
			ns = make([]uint32, off+len(v))
		}
		copy(ns, s)
		s = ns
	}
	out := s[off : off+len(v)]
	j := 0
	for i := 0; i < len(v); {
		c := v[i]
		if c < 0x80 {
			out[j] = uint32(c)
			i++
			j++
			continue
		}
		if i+1 < len(v) && v[i+1] < 0x80 {
			out[j] = uint32(c&0x7f) | uint32(v[i+1])<<7
			i += 2
			j++
			continue
		}
		x, n := protowire.ConsumeVarint(v[i:])
		if n < 0 {
			return s[:off], false
		}
		out[j] = uint32(x)
		i += n
		j++
	}
	return s[:off+j], true
}

// consumePackedU64 appends the packed varints of v to s, reporting false
// for malformed input. It allocates (when s has no room) exactly what the
// values need: one byte under 0x80 ends each varint.
func consumePackedU64(s []uint64, v []byte) ([]uint64, bool) {
	if len(v) == 0 {
		return s, true
	}
	if v[len(v)-1] >= 0x80 {
		return s, false // truncated varint
	}
	k := 0
	for _, c := range v {
		if c < 0x80 {
			k++
		}
	}
	off := len(s)
	s = slices.Grow(s, k)[:off+k]
	out := s[off:]
	j := 0
	for i := 0; i < len(v); j++ {
		if c := v[i]; c < 0x80 {
			out[j] = uint64(c)
			i++
			continue
		}
		x, n := protowire.ConsumeVarint(v[i:])
		if n < 0 {
			return s[:off], false
		}
		out[j] = x
		i += n
	}
	return s, true
}

// consumeFixed64s appends the packed fixed64 column v to s, which comes
// from pool when it is empty (from gives a value from its 64 bits).
func consumeFixed64s[T fixed64](s []T, v []byte, pool *colPool[T], from func(uint64) T) ([]T, bool) {
	if len(v)%8 != 0 {
		return s, false
	}
	n := len(v) / 8
	if n == 0 {
		return s, true
	}
	off := len(s)
	if off == 0 {
		s = pool.get(n)
	} else {
		s = append(s, make([]T, n)...)
	}
	out := s[off : off+n]
	if littleEndian {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), len(v)), v)
		return s, true
	}
	for i := range out {
		out[i] = from(binary.LittleEndian.Uint64(v[8*i:]))
	}
	return s, true
}

// --- gRPC codec ---

// codec is the gRPC codec of the plugin protocol's connections: protobuf,
// under grpc's name for it (a peer with grpc's own codec interoperates),
// with internal/grpcbuf's buffers; Batch and ProcessResult go through the
// hand-written encoding above, every other message through grpcbuf's codec.
// Safe for concurrent use.
type codec struct {
	pool mem.BufferPool
	base encoding.CodecV2
}

// NewCodec returns the plugin protocol's codec (grpc.ForceCodecV2 /
// grpc.ForceServerCodecV2), with buffers from pool (grpcbuf.NewBufferPool).
// Received Batch and ProcessResult messages have pooled columns: their
// receiver should RecycleBatch / RecycleProcessResult them once decoded.
func NewCodec(pool mem.BufferPool) encoding.CodecV2 {
	return codec{pool: pool, base: grpcbuf.NewCodec(pool)}
}

func (c codec) Name() string { return c.base.Name() }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	var size int
	var sizes []int
	var small [16]int
	switch m := v.(type) {
	case *pluginpb.Batch:
		if m == nil || hasUnknown(m) {
			return c.base.Marshal(v)
		}
		var ser, pts, ids int
		size, ser, pts, ids = batchSize(m)
		sizes = append(small[:0], ser, pts, ids)
	case *pluginpb.ProcessResult:
		if !processResultPlain(m) {
			return c.base.Marshal(v)
		}
		size, sizes = processResultSize(m, small[:0])
	default:
		return c.base.Marshal(v)
	}
	buf := c.pool.Get(size)
	b := (*buf)[:0]
	var err error
	switch m := v.(type) {
	case *pluginpb.Batch:
		b, err = appendBatch(b, m, sizes[0], sizes[1], sizes[2])
	case *pluginpb.ProcessResult:
		b, err = appendProcessResult(b, m, sizes)
	}
	if err == nil && len(b) != size {
		err = fmt.Errorf("wire: %T encoded to %d bytes, sized %d", v, len(b), size)
	}
	if err != nil {
		c.pool.Put(buf)
		return nil, err
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *pluginpb.Batch:
		buf := data.MaterializeToBuffer(c.pool)
		defer buf.Free()
		return UnmarshalBatch(buf.ReadOnlyData(), m)
	case *pluginpb.ProcessResult:
		buf := data.MaterializeToBuffer(c.pool)
		defer buf.Free()
		return UnmarshalProcessResult(buf.ReadOnlyData(), m)
	}
	return c.base.Unmarshal(data, v)
}
