package wire

import (
	"github.com/telemetry-collector/telemetry-collector/internal/pluginpb"
	"github.com/telemetry-collector/telemetry-collector/sdk/metric"
)

// EncodeRejects appends rs to dst as wire rejects.
func EncodeRejects(dst []*pluginpb.Reject, rs []metric.Reject) []*pluginpb.Reject {
	for _, r := range rs {
		dst = append(dst, &pluginpb.Reject{Reason: r.Reason, Position: r.Position, Raw: r.Raw})
	}
	return dst
}

// DecodeRejects appends rs to dst as metric rejects.
func DecodeRejects(dst []metric.Reject, rs []*pluginpb.Reject) []metric.Reject {
	for _, r := range rs {
		dst = append(dst, metric.Reject{Reason: r.GetReason(), Position: r.GetPosition(), Raw: r.GetRaw()})
	}
	return dst
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// labelSlots is the size of an encoder's direct-mapped cache of the label
// slices it wrote, keyed by the slice's address.
const labelSlots = 512

// labelSlotBits and maxLabelSlotBits bound the size of a StreamEncoder's
// cache of the label slices of one Encode (1<<bits slots, for batches of
// up to 4<<bits series).
const (
	labelSlotBits    = 9
	maxLabelSlotBits = 12
)
