package suggest

import "testing"

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"kitten", "sitting", 3},
		{"log_levle", "log_level", 1}, // transposition
		{"fsycn", "fsync", 1},
		{"adress", "address", 1},
		{"same", "same", 0},
	}
	for _, tt := range tests {
		if got := Distance(tt.a, tt.b); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestClosest(t *testing.T) {
	keys := []string{"address", "topic", "consumer_id", "batch_size", "max_in_flight", "ack_timeout"}
	tests := []struct {
		word, want string
	}{
		{"adress", "address"},
		{"Topik", "topic"},
		{"batchsize", "batch_size"},
		{"max_in_flite", "max_in_flight"},
		{"ack", ""},                 // too short for a prefix match, too far otherwise
		{"consumer", "consumer_id"}, // prefix
		{"zzzzzzzz", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Closest(tt.word, keys); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
	if got := Closest("x", nil); got != "" {
		t.Errorf("no candidates: %q", got)
	}
}
