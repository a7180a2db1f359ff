package wire

import (
	"bytes"
	"math"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/telemetry-collector/telemetry-collector/internal/grpcbuf"
	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
)

// codecBatches covers every field of pluginpb.Batch: zero and extreme
// values, multi-byte varints, empty strings, rejects, unknown fields.
func codecBatches() []*pluginpb.Batch {
	big := &pluginpb.Batch{Id: 1 << 40, StringBase: 300, SeriesBase: 1 << 31}
	for i := 0; i < 5000; i++ {
		big.SeriesIds = append(big.SeriesIds, uint32(i*37))
		big.PointSeries = append(big.PointSeries, uint32(i%5000))
		big.PointTime = append(big.PointTime, 1_700_000_000_000_000_000+int64(i))
		big.PointValue = append(big.PointValue, float64(i)/3)
	}
	unknown := &pluginpb.Batch{Id: 7, SeriesIds: []uint32{1}}
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 5))
	return []*pluginpb.Batch{
		{},
		{Id: 1},
		{End: true, RunError: "boom: ünïcode"},
		{ResetDictionary: true, Strings: []string{"", "gpu_temp", "host", "\x00"}, Series: []uint32{0, 2, 1, 2, 3, 1 << 7, 1<<14 - 1, 1 << 14, 1 << 21, 1 << 28, math.MaxUint32}},
		{PointSeries: []uint32{0}, PointTime: []int64{-1}, PointValue: []float64{math.NaN()}, SeriesIds: []uint32{0}},
		{PointTime: []int64{math.MinInt64, math.MaxInt64, 0}, PointValue: []float64{math.Inf(-1), math.Copysign(0, -1), math.MaxFloat64}},
		{Rejects: []*pluginpb.Reject{{Reason: "bad", Position: "line 3", Raw: []byte("x y")}, {}}},
		big,
		unknown,
	}
}

// tag, varint and bytesf write one field by hand, for the raw encodings
// below.
func tag(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }

func varint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(tag(num, protowire.VarintType), v)
}

func bytesf(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(tag(num, protowire.BytesType), v)
}

// rawBatches are encodings proto.Marshal does not produce but
// proto.Unmarshal reads (or refuses): repeated scalars unpacked, fields
// twice, wrong wire types, unknown fields, malformed input.
func rawBatches() [][]byte {
	fixed := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendFixed64(tag(num, protowire.Fixed64Type), v)
	}
	packed := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = protowire.AppendVarint(b, v)
		}
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return [][]byte{
		nil,
		cat(varint(fBatchSeriesIDs, 3), varint(fBatchSeriesIDs, 4)),                           // unpacked
		cat(bytesf(fBatchSeriesIDs, packed(1, 2)), bytesf(fBatchSeriesIDs, packed(3, 1<<40))), // twice, appended; truncated to 32 bits
		cat(bytesf(fBatchPtSeries, packed(1<<35|5, 300))),                                     // long varints
		cat(fixed(fBatchPtTime, 5), bytesf(fBatchPtTime, make([]byte, 16))),                   // unpacked then packed
		cat(bytesf(fBatchPtValue, make([]byte, 8)), bytesf(fBatchPtValue, make([]byte, 8))),
		cat(varint(fBatchID, 1), varint(fBatchID, 2)),                                          // last wins
		cat(varint(fBatchEnd, 2), varint(fBatchReset, 1<<40), varint(fBatchStringBase, 1<<33)), // bools, truncation
		cat(bytesf(fBatchEnd, nil)),                                                            // wrong wire type: unknown
		cat(varint(99, 1), bytesf(100, []byte("x"))),                                           // unknown fields
		cat(bytesf(fBatchStrings, []byte("\xff"))),                                             // invalid UTF-8
		cat(bytesf(fBatchRunError, []byte("\xc3"))),
		cat(bytesf(fBatchPtTime, make([]byte, 7))),                                                    // bad packed fixed64
		cat(bytesf(fBatchSeries, []byte{0x80})),                                                       // truncated varint
		cat(bytesf(fBatchSeries, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})), // overlong varint
		cat(bytesf(fBatchSeries, nil), bytesf(fBatchPtTime, nil)),                                     // empty packed
		cat(bytesf(fBatchRejects, []byte{0xff})),                                                      // bad reject
		cat(bytesf(fBatchRejects, bytesf(1, []byte("r")))),
		{0x00},             // field 0
		{0x08},             // truncated
		{0x0a, 0x05, 0x01}, // truncated length
		cat(varint(fBatchID, 1))[:1],
	}
}

func checkUnmarshalBatch(t *testing.T, name string, raw []byte) {
	t.Helper()
	var want, got pluginpb.Batch
	errWant := proto.Unmarshal(raw, &want)
	got.Id = 12345 // reset first
	got.Strings = []string{"old"}
	errGot := UnmarshalBatch(raw, &got)
	if (errWant == nil) != (errGot == nil) {
		t.Fatalf("%s: UnmarshalBatch error %v, proto.Unmarshal %v", name, errGot, errWant)
	}
	if errWant == nil && !proto.Equal(&want, &got) {
		t.Fatalf("%s: UnmarshalBatch gave\n%v\nproto.Unmarshal\n%v", name, &got, &want)
	}
	var wantR, gotR pluginpb.ProcessResult
	rr := protowire.AppendBytes(protowire.AppendTag(nil, fResultBatches, protowire.BytesType), raw)
	errWant = proto.Unmarshal(rr, &wantR)
	errGot = UnmarshalProcessResult(rr, &gotR)
	if (errWant == nil) != (errGot == nil) {
		t.Fatalf("%s in a ProcessResult: error %v, proto.Unmarshal %v", name, errGot, errWant)
	}
	if errWant == nil && !proto.Equal(&wantR, &gotR) {
		t.Fatalf("%s in a ProcessResult: gave\n%v\nproto.Unmarshal\n%v", name, &gotR, &wantR)
	}
	RecycleBatch(&got)
	RecycleProcessResult(&gotR)
}

func checkMarshalBatch(t *testing.T, name string, m *pluginpb.Batch) {
	t.Helper()
	want, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := AppendBatch([]byte("prefix"), m)
	if err != nil || !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
		t.Fatalf("%s: AppendBatch = %x, %v; proto.Marshal %x", name, got, err, want)
	}
	if n := BatchSize(m); n != len(want) {
		t.Fatalf("%s: BatchSize %d, proto %d", name, n, len(want))
	}
	r := &pluginpb.ProcessResult{Id: m.Id, Batches: []*pluginpb.Batch{m, m}, Error: m.RunError, Permanent: m.End}
	want, err = proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err = AppendProcessResult(nil, r)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s in a ProcessResult: %x, %v; proto.Marshal %x", name, got, err, want)
	}
	if n := ProcessResultSize(r); n != len(want) {
		t.Fatalf("%s in a ProcessResult: size %d, proto %d", name, n, len(want))
	}
}

// TestBatchCodec: the hand-written encoding is proto's, byte for byte,
// and decodes what proto.Unmarshal decodes (errors included).
func TestBatchCodec(t *testing.T) {
	for i, m := range codecBatches() {
		name := "batch " + string(rune('A'+i))
		checkMarshalBatch(t, name, m)
		raw, _ := proto.Marshal(m)
		checkUnmarshalBatch(t, name, raw)
	}
	for i, raw := range rawBatches() {
		checkUnmarshalBatch(t, "raw "+string(rune('a'+i)), raw)
	}
	// ProcessResult fields of its own, twice, and unknown.
	r := &pluginpb.ProcessResult{Id: 9, Error: "failed", Permanent: true}
	raw, _ := proto.Marshal(r)
	raw = protowire.AppendVarint(protowire.AppendTag(raw, 1, protowire.VarintType), 10)
	for _, b := range [][]byte{raw, append(raw, 0x58, 1), append(raw, 0x1a, 1, 0xff)} {
		var want, got pluginpb.ProcessResult
		errWant := proto.Unmarshal(b, &want)
		errGot := UnmarshalProcessResult(b, &got)
		if (errWant == nil) != (errGot == nil) || !proto.Equal(&want, &got) {
			t.Fatalf("ProcessResult %x: %v %v, proto %v %v", b, &got, errGot, &want, errWant)
		}
	}
}

// TestCodecRoundTrip: the gRPC codec's bytes are proto's and read back
// as proto reads them, whatever pieces they arrive in; other messages go
// through grpcbuf's codec; recycled columns are not shared by two live
// messages.
func TestCodecRoundTrip(t *testing.T) {
	pool := grpcbuf.NewBufferPool()
	c := NewCodec(pool)
	if c.Name() != "proto" {
		t.Fatalf("Name() = %q", c.Name())
	}
	for i, m := range codecBatches() {
		for _, v := range []proto.Message{m, &pluginpb.ProcessResult{Id: uint64(i), Batches: []*pluginpb.Batch{m}}} {
			data, err := c.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			raw := data.Materialize()
			want, _ := proto.Marshal(v)
			if !bytes.Equal(raw, want) {
				t.Fatalf("%d: %T: codec bytes differ from proto.Marshal's", i, v)
			}
			data.Free()
			// In pieces of 7 bytes.
			var in mem.BufferSlice
			for off := 0; off < len(raw); off += 7 {
				in = append(in, mem.SliceBuffer(raw[off:min(off+7, len(raw))]))
			}
			got := v.ProtoReflect().New().Interface()
			if err := c.Unmarshal(in, got); err != nil || !proto.Equal(got, v) {
				t.Fatalf("%d: %T: Unmarshal = %v, %v", i, v, got, err)
			}
		}
	}
	// Recycled columns go to the next message, never to two at once.
	raw, _ := proto.Marshal(codecBatches()[7])
	var a, b pluginpb.Batch
	if err := UnmarshalBatch(raw, &a); err != nil {
		t.Fatal(err)
	}
	RecycleBatch(&a)
	if a.PointTime != nil || a.SeriesIds != nil {
		t.Fatal("RecycleBatch left columns in the message")
	}
	if err := UnmarshalBatch(raw, &a); err != nil {
		t.Fatal(err)
	}
	if err := UnmarshalBatch(raw, &b); err != nil {
		t.Fatal(err)
	}
	if &a.PointTime[0] == &b.PointTime[0] || &a.SeriesIds[0] == &b.SeriesIds[0] {
		t.Fatal("two live messages share a pooled column")
	}
	// Any other message: grpcbuf's codec.
	d := &pluginpb.DescribeResponse{ProtocolVersion: 2}
	data, err := c.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var d2 pluginpb.DescribeResponse
	if err := c.Unmarshal(data, &d2); err != nil || !proto.Equal(d, &d2) {
		t.Fatalf("DescribeResponse: %v, %v", &d2, err)
	}
}

// FuzzBatchCodec: for any input, UnmarshalBatch and UnmarshalProcessResult
// agree with proto.Unmarshal, and what they decode re-encodes to
// proto.Marshal's bytes.
func FuzzBatchCodec(f *testing.F) {
	for _, m := range codecBatches() {
		raw, _ := proto.Marshal(m)
		if len(raw) < 4096 {
			f.Add(raw)
		}
	}
	for _, raw := range rawBatches() {
		f.Add(raw)
	}
	for _, r := range groupResults() {
		raw, _ := proto.Marshal(r)
		f.Add(raw)
	}
	for _, raw := range rawResults() {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkUnmarshalBatch(t, "fuzz", raw)
		var m pluginpb.Batch
		if UnmarshalBatch(raw, &m) == nil {
			checkMarshalBatch(t, "fuzz", &m)
		}
		var r pluginpb.ProcessResult
		if UnmarshalProcessResult(raw, &r) == nil {
			want, err := proto.Marshal(&r)
			if err != nil {
				return
			}
			got, err := AppendProcessResult(nil, &r)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("ProcessResult re-encoded to %x, %v; proto %x", got, err, want)
			}
		}
	})
}

// BenchmarkBatchCodec: marshalling and unmarshalling a scrape-shaped
// batch message (9,840 points of as many series, steady state: no
// definitions) by proto and by the hand-written codec (columns recycled,
// as the receive loops do).
func BenchmarkBatchCodec(b *testing.B) {
	const n = 9840
	m := &pluginpb.Batch{Id: 77}
	for i := 0; i < n; i++ {
		m.SeriesIds = append(m.SeriesIds, uint32(i))
		m.PointSeries = append(m.PointSeries, uint32(i))
		m.PointTime = append(m.PointTime, 1_700_000_000_000_000_000)
		m.PointValue = append(m.PointValue, float64(i%30*i))
	}
	raw, _ := proto.Marshal(m)
	buf := make([]byte, 0, len(raw))
	perSample := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
	}
	b.Run("marshal/proto", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf, _ = proto.MarshalOptions{}.MarshalAppend(buf[:0], m)
		}
		perSample(b)
	})
	b.Run("marshal/wire", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf, _ = AppendBatch(buf[:0], m)
		}
		perSample(b)
	})
	b.Run("unmarshal/proto", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var d pluginpb.Batch
			if err := proto.Unmarshal(raw, &d); err != nil {
				b.Fatal(err)
			}
		}
		perSample(b)
	})
	b.Run("unmarshal/wire", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var d pluginpb.Batch
			if err := UnmarshalBatch(raw, &d); err != nil {
				b.Fatal(err)
			}
			RecycleBatch(&d)
		}
		perSample(b)
	})
}

// TestCodecNilMessages: typed nil messages marshal as proto's codec does
// (to nothing), never panic.
func TestCodecNilMessages(t *testing.T) {
	c := NewCodec(grpcbuf.NewBufferPool())
	for _, v := range []any{(*pluginpb.Batch)(nil), (*pluginpb.ProcessResult)(nil)} {
		data, err := c.Marshal(v)
		if err != nil || data.Len() != 0 {
			t.Fatalf("%T: %d bytes, %v", v, data.Len(), err)
		}
	}
	if b, err := AppendBatch([]byte("x"), nil); err != nil || string(b) != "x" || BatchSize(nil) != 0 {
		t.Fatalf("AppendBatch(nil) = %q, %v; BatchSize(nil) = %d", b, err, BatchSize(nil))
	}
	if b, err := AppendProcessResult(nil, nil); err != nil || len(b) != 0 || ProcessResultSize(nil) != 0 {
		t.Fatalf("AppendProcessResult(nil) = %q, %v; ProcessResultSize(nil) = %d", b, err, ProcessResultSize(nil))
	}
}

// groupResults are ProcessResults with the fields of a process group
// (5-10): zero and extreme values, multi-byte varints, with and without
// batches, error and unknown fields.
func groupResults() []*pluginpb.ProcessResult {
	data := &pluginpb.Batch{Id: 3, PointSeries: []uint32{0, 1}, PointTime: []int64{1, 2}, PointValue: []float64{0.5, 1.5}, SeriesIds: []uint32{7, 300}}
	rejects := &pluginpb.Batch{Rejects: []*pluginpb.Reject{{Reason: "bad"}}}
	unknown := &pluginpb.ProcessResult{Id: 5, MemberCalls: []uint64{1, 1}}
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 11, protowire.VarintType), 5))
	return []*pluginpb.ProcessResult{
		{BatchMembers: []uint32{0}},
		{ErrorMember: 1},
		{ErrorMember: math.MaxUint32, Error: "member 2 failed", Permanent: true},
		{MemberCalls: []uint64{0}},
		{MemberPoints: []uint64{0, 0, 0}},
		{MemberNanos: []uint64{math.MaxUint64, 1 << 63, 1<<7 - 1, 1 << 7, 1<<14 - 1, 1 << 14, 1 << 35}},
		{MemberRetries: []uint64{2}},
		{BatchMembers: []uint32{0, 1 << 7, 1 << 14, 1 << 21, 1 << 28, math.MaxUint32}},
		{
			Id: 1 << 40, Batches: []*pluginpb.Batch{data, rejects, rejects}, BatchMembers: []uint32{2, 0, 1},
			MemberCalls: []uint64{1, 1, 1}, MemberPoints: []uint64{2, 2, 2}, MemberNanos: []uint64{1500, 120_000, 3_000_000_000}, MemberRetries: []uint64{0, 0, 1},
		},
		{Id: 9, Error: "boom", ErrorMember: 2, MemberCalls: []uint64{1, 1, 1, 0}, MemberPoints: []uint64{10, 10, 9, 0}, MemberNanos: []uint64{5, 6, 7, 0}, MemberRetries: []uint64{0, 0, 3, 0}},
		unknown,
	}
}

// rawResults are ProcessResult encodings of the group fields that
// proto.Marshal does not write but proto.Unmarshal reads (or refuses):
// unpacked repeated scalars, mixed forms, fields twice, zero values
// written out, wrong wire types, malformed packed varints.
func rawResults() [][]byte {
	packed := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = protowire.AppendVarint(b, v)
		}
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	var raws [][]byte
	for _, num := range []protowire.Number{fResultBatchMembers, fResultMemberCalls, fResultMemberPoints, fResultMemberNanos, fResultMemberRetries} {
		raws = append(raws,
			cat(varint(num, 3)), // unpacked
			cat(varint(num, 0), varint(num, 1<<40), varint(num, math.MaxUint64)),    // unpacked, zero, truncated for uint32
			cat(bytesf(num, packed(1, 2)), varint(num, 3), bytesf(num, packed(4))),  // mixed, appended
			cat(bytesf(num, packed(0, 0))),                                          // zeros
			cat(bytesf(num, nil)),                                                   // empty packed
			cat(bytesf(num, nil), varint(fResultID, 1), bytesf(num, packed(1<<63))), // interleaved
			cat(bytesf(num, []byte{0x80})),                                          // truncated varint
			cat(bytesf(num, []byte{0x01, 0xff})),
			cat(bytesf(num, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})), // overlong varint
			cat(bytesf(num, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})), // 10 bytes, valid
			cat(bytesf(num, []byte{0x81, 0x80, 0x00})),                                           // non-minimal
			protowire.AppendFixed64(tag(num, protowire.Fixed64Type), 1),                          // wrong wire type
			protowire.AppendFixed32(tag(num, protowire.Fixed32Type), 1),
		)
	}
	return append(raws,
		cat(varint(fResultErrorMember, 0)),                                      // zero written out
		cat(varint(fResultErrorMember, 1), varint(fResultErrorMember, 2)),       // last wins
		cat(varint(fResultErrorMember, 1<<40|7)),                                // truncated to 32 bits
		cat(bytesf(fResultErrorMember, packed(1))),                              // wrong wire type: unknown
		cat(varint(fResultErrorMember, 1)[:1]),                                  // truncated
		cat(varint(fResultMemberCalls, 1), varint(11, 1)),                       // unknown field after
		cat(bytesf(fResultMemberNanos, packed(1)), bytesf(fResultBatches, nil)), // group field before a batch
	)
}

func checkProcessResult(t *testing.T, name string, r *pluginpb.ProcessResult) {
	t.Helper()
	want, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := AppendProcessResult([]byte("prefix"), r)
	if err != nil || !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
		t.Fatalf("%s: AppendProcessResult = %x, %v; proto.Marshal %x", name, got, err, want)
	}
	if n := ProcessResultSize(r); n != len(want) {
		t.Fatalf("%s: ProcessResultSize %d, proto %d", name, n, len(want))
	}
	checkUnmarshalResult(t, name, want)
}

// checkUnmarshalResult: UnmarshalProcessResult decodes raw as
// proto.Unmarshal does, into a message that held another result (reset
// first), and what it decodes re-encodes to proto.Marshal's bytes.
func checkUnmarshalResult(t *testing.T, name string, raw []byte) {
	t.Helper()
	var want pluginpb.ProcessResult
	errWant := proto.Unmarshal(raw, &want)
	got := pluginpb.ProcessResult{Id: 12345, ErrorMember: 4, BatchMembers: []uint32{9}, MemberCalls: []uint64{8}, MemberRetries: []uint64{7, 7}}
	errGot := UnmarshalProcessResult(raw, &got)
	if (errWant == nil) != (errGot == nil) {
		t.Fatalf("%s: UnmarshalProcessResult error %v, proto.Unmarshal %v", name, errGot, errWant)
	}
	if errWant != nil {
		return
	}
	if !proto.Equal(&want, &got) {
		t.Fatalf("%s: UnmarshalProcessResult gave\n%v\nproto.Unmarshal\n%v", name, &got, &want)
	}
	wantB, err := proto.Marshal(&want)
	if err != nil {
		t.Fatal(err)
	}
	gotB, err := AppendProcessResult(nil, &got)
	if err != nil || !bytes.Equal(gotB, wantB) || ProcessResultSize(&got) != len(wantB) {
		t.Fatalf("%s: re-encoded to %x, %v (size %d); proto %x", name, gotB, err, ProcessResultSize(&got), wantB)
	}
	RecycleProcessResult(&got)
}

// TestProcessResultGroupFields: the process group fields of a
// ProcessResult (5-10) are written as proto.Marshal writes them (packed,
// zero error_member left out) and read as proto.Unmarshal reads them,
// packed or not, by the hand-written codec itself (no proto fallback) and
// by the gRPC codec.
func TestProcessResultGroupFields(t *testing.T) {
	c := NewCodec(grpcbuf.NewBufferPool())
	for i, r := range groupResults() {
		name := "result " + string(rune('A'+i))
		checkProcessResult(t, name, r)
		raw, _ := proto.Marshal(r)
		data, err := c.Marshal(r)
		if err != nil || !bytes.Equal(data.Materialize(), raw) {
			t.Fatalf("%s: codec Marshal %x, %v; proto %x", name, data.Materialize(), err, raw)
		}
		var got pluginpb.ProcessResult
		if err := c.Unmarshal(data, &got); err != nil || !proto.Equal(&got, r) {
			t.Fatalf("%s: codec Unmarshal %v, %v", name, &got, err)
		}
		data.Free()
		if hasUnknown(r) {
			continue
		}
		// The fast decoder reads it all: no fallback to proto.
		var fast pluginpb.ProcessResult
		if err := unmarshalProcessResult(raw, &fast); err != nil || !proto.Equal(&fast, r) {
			t.Fatalf("%s: fast decoder %v, %v", name, &fast, err)
		}
	}
	for i, raw := range rawResults() {
		name := "raw result " + string(rune('a'+i))
		checkUnmarshalResult(t, name, raw)
		var want pluginpb.ProcessResult
		if proto.Unmarshal(raw, &want) != nil || len(want.ProtoReflect().GetUnknown()) > 0 {
			continue
		}
		// Every form proto reads without unknown fields, the fast decoder
		// reads too.
		var fast pluginpb.ProcessResult
		if err := unmarshalProcessResult(raw, &fast); err != nil || !proto.Equal(&fast, &want) {
			t.Fatalf("%s: fast decoder %v, %v; proto %v", name, &fast, err, &want)
		}
	}
	// Reset semantics: decoding a plain result into a message that held a
	// group result leaves no group field behind.
	raw, _ := proto.Marshal(&pluginpb.ProcessResult{Id: 2})
	r := groupResults()[9]
	if err := UnmarshalProcessResult(raw, r); err != nil || !proto.Equal(r, &pluginpb.ProcessResult{Id: 2}) {
		t.Fatalf("decoded over a group result: %v, %v", r, err)
	}
}

// BenchmarkProcessResultCodec: marshalling and unmarshalling a processor's
// result (one 1,024-point batch and a batch of rejects) by proto and by
// the hand-written codec, plain and from a process group of 4 members
// (batch_members, member_calls/points/nanos/retries).
func BenchmarkProcessResultCodec(b *testing.B) {
	const n = 1024
	data := &pluginpb.Batch{Id: 77}
	for i := 0; i < n; i++ {
		data.SeriesIds = append(data.SeriesIds, uint32(i))
		data.PointSeries = append(data.PointSeries, uint32(i))
		data.PointTime = append(data.PointTime, 1_700_000_000_000_000_000)
		data.PointValue = append(data.PointValue, float64(i%30*i))
	}
	rejects := &pluginpb.Batch{Rejects: []*pluginpb.Reject{{Reason: "bad value", Position: "gpu_temp"}}}
	plain := &pluginpb.ProcessResult{Id: 77, Batches: []*pluginpb.Batch{data, rejects}}
	group := &pluginpb.ProcessResult{
		Id: 77, Batches: []*pluginpb.Batch{data, rejects}, BatchMembers: []uint32{3, 1},
		MemberCalls: []uint64{1, 1, 1, 1}, MemberPoints: []uint64{n, n + 1, n + 1, n},
		MemberNanos: []uint64{41_000, 120_000, 8_500, 63_000}, MemberRetries: []uint64{0, 0, 1, 0},
	}
	for _, c := range []struct {
		name string
		r    *pluginpb.ProcessResult
	}{{"plain", plain}, {"group", group}} {
		raw, _ := proto.Marshal(c.r)
		buf := make([]byte, 0, len(raw))
		b.Run(c.name+"/marshal/proto", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf, _ = proto.MarshalOptions{}.MarshalAppend(buf[:0], c.r)
			}
		})
		b.Run(c.name+"/marshal/wire", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf, _ = AppendProcessResult(buf[:0], c.r)
			}
		})
		b.Run(c.name+"/unmarshal/proto", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var d pluginpb.ProcessResult
				if err := proto.Unmarshal(raw, &d); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/unmarshal/wire", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var d pluginpb.ProcessResult
				if err := UnmarshalProcessResult(raw, &d); err != nil {
					b.Fatal(err)
				}
				RecycleProcessResult(&d)
			}
		})
	}
}
