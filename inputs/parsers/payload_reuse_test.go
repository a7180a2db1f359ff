package parsers

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/telemetry-collector/telemetry-collector/sdk"
)

// TestPayloadNotRetained: once Parse returns, nothing a parser keeps (its
// caches, templates, the batch it filled) refers to the payload's memory.
// The mq_service input decodes responses into buffers it reuses as soon as
// a response is parsed (mqcodec.Buffers), so a parser that kept a slice or
// an unsafe string of a payload would read another message's bytes later.
//
// Every payload of the realistic sequences is parsed from one buffer that
// is overwritten with another payload, then garbage, right after Parse: the
// batch must not change, and every result must equal that of a parser
// without caches on a private copy of the payload.
func TestPayloadNotRetained(t *testing.T) {
	seqs := cachePayloads(t)
	seqs[FormatNvidiaSMICSV] = [][]byte{readTestdata(t, "nvidia-smi-query-gpu.csv")}
	msgTime := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	for format, payloads := range seqs {
		for _, shared := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/shared=%v", format, shared), func(t *testing.T) {
				opts := Options{Location: time.UTC, SharedLabels: shared}
				p := mustParser(t, format, opts)
				var buf []byte
				// Twice through the sequence, so the second pass runs on
				// what the caches learnt from overwritten buffers.
				for pass := 0; pass < 2; pass++ {
					for k, payload := range payloads {
						buf = append(buf[:0], payload...)
						var got sdk.Batch
						err := p.Parse(buf, msgTime, fmt.Sprintf("message %d", k), &got)
						before := dumpBatch(&got)
						// The next message lands in the same buffer, then
						// garbage.
						next := payloads[(k+1)%len(payloads)]
						copy(buf, next)
						for i := len(next); i < len(buf); i++ {
							buf[i] = 0xAA
						}
						if after := dumpBatch(&got); after != before {
							t.Fatalf("pass %d payload %d: the batch changed when the payload's buffer was reused", pass, k)
						}
						ref := mustParser(t, format, opts)
						if format != FormatNvidiaSMICSV {
							ref = uncached(format)
						}
						var want sdk.Batch
						wantErr := ref.Parse(bytes.Clone(payload), msgTime, fmt.Sprintf("message %d", k), &want)
						if (err == nil) != (wantErr == nil) {
							t.Fatalf("pass %d payload %d: error %v, a parser without caches: %v", pass, k, err, wantErr)
						}
						if before != dumpBatch(&want) {
							t.Fatalf("pass %d payload %d: differs from a parser without caches on a private copy:\n%.2000s\nwant\n%.2000s", pass, k, before, dumpBatch(&want))
						}
					}
				}
			})
		}
	}
}
