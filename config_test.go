package sluice

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// Options compose in order, and WithConfig sets only what it names.
func TestOptionsCompose(t *testing.T) {
	a, err := New(WithBrokers("kafka-1:9092"), WithConfig(Config{HTTPAddr: "127.0.0.1:0", DrainTimeout: 3 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.cfg.Brokers, []string{"kafka-1:9092"}) {
		t.Fatalf("WithConfig dropped the brokers set before it: %v", a.cfg.Brokers)
	}
	if a.cfg.HTTPAddr != "127.0.0.1:0" || a.cfg.DrainTimeout != 3*time.Second {
		t.Fatalf("WithConfig's fields not applied: %+v", a.cfg)
	}
	if a.cfg.CommitInterval != DefaultConfig().CommitInterval || a.cfg.Partitions != DefaultConfig().Partitions {
		t.Fatalf("unset fields lost their defaults: %+v", a.cfg)
	}
	b, err := New(WithConfig(Config{Brokers: []string{"x:1"}}), WithBrokers("y:2"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.cfg.Brokers, []string{"y:2"}) {
		t.Fatalf("a later option must win: %v", b.cfg.Brokers)
	}
	if got, want := a.cfg.RebalanceTimeout(), 3*time.Second+DefaultConfig().DrainGrace+DefaultConfig().FinalCommitTimeout+5*time.Second; got != want {
		t.Fatalf("rebalance timeout %s, want %s (drain + grace + final commit + margin)", got, want)
	}
}

// Bad timeouts are refused with the key path.
func TestConfigRejectsBadTimeouts(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{DrainTimeout: 10 * time.Minute}, "drainTimeout"},
		{Config{FinalCommitTimeout: 500 * time.Millisecond}, "finalCommitTimeout"},
		{Config{FinalCommitTimeout: 2 * time.Minute}, "finalCommitTimeout"},
		{Config{DrainGrace: 2 * time.Minute}, "drainGrace"},
	} {
		_, err := New(WithConfig(c.cfg))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
}
