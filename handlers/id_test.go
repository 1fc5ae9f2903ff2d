package handlers

import "testing"

func TestIDRoundTripsAndRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		topic string
		p     int
		o     int64
	}{{"orders", 0, 0}, {"a/b/c", 11, 1 << 40}, {"__sluice.x.replay", 3, 7}} {
		id := FormatID(c.topic, c.p, c.o)
		topic, p, o, ok := ParseID(id)
		if !ok || topic != c.topic || p != c.p || o != c.o {
			t.Errorf("ParseID(%q) = %q %d %d %v, want %q %d %d", id, topic, p, o, ok, c.topic, c.p, c.o)
		}
	}
	for _, bad := range []string{"", "orders", "orders/1", "/1/2", "orders/x/2", "orders/1/y", "orders/-1/2", "orders/1/-2", "orders//2"} {
		if _, _, _, ok := ParseID(bad); ok {
			t.Errorf("ParseID(%q) accepted it", bad)
		}
	}
}
