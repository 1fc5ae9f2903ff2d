package ktable_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/broker"
	"github.com/sluicehq/sluice/internal/ktable"
	"github.com/sluicehq/sluice/internal/testkit"
)

func run(t *testing.T, brokers []string) (*ktable.Table, func()) {
	t.Helper()
	tab := ktable.New(ktable.Config{Topics: testkit.Topics(t, brokers), Brokers: brokers, Topic: "__test_table", Logger: testkit.Logger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = tab.Run(ctx) }()
	testkit.Eventually(t, 10*time.Second, func() bool { ok, _ := tab.Loaded(); return ok }, "table loaded")
	return tab, func() { cancel(); <-done }
}

// Writes are visible on return (read-your-writes), deletes remove rows,
// and a second reader — another node, or this one after a restart of the
// broker on the same data dir — converges on the same rows.
func TestTableReadYourWritesAndConverges(t *testing.T) {
	dir := t.TempDir()
	b, err := broker.Start(broker.Config{DataDir: dir, Addr: "127.0.0.1:0", Logger: testkit.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	a, stopA := run(t, b.Addrs())
	ctx := context.Background()
	for _, kv := range [][2]string{{"x", "1"}, {"y", "2"}, {"x", "3"}} {
		if _, err := a.Put(ctx, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
		if r, ok := a.Get(kv[0]); !ok || string(r.Value) != kv[1] {
			t.Fatalf("after Put(%s=%s) Get says %q %v", kv[0], kv[1], r.Value, ok)
		}
	}
	if _, err := a.Put(ctx, "y", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Get("y"); ok {
		t.Fatal("a deleted row is still there")
	}
	other, stopOther := run(t, b.Addrs())
	if rows := other.Rows(); len(rows) != 1 || rows[0].Key != "x" || string(rows[0].Value) != "3" {
		t.Fatalf("second reader sees %+v", rows)
	}
	stopOther()
	stopA()
	b.Close()

	b2, err := broker.Start(broker.Config{DataDir: dir, Addr: "127.0.0.1:0", Logger: testkit.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	again, stop := run(t, b2.Addrs())
	defer stop()
	if rows := again.Rows(); len(rows) != 1 || string(rows[0].Value) != "3" {
		t.Fatalf("after a broker restart: %+v", rows)
	}
}
