package broker

import (
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The watch's deadlines: a member is removed only when it has been silent
// for longer than its session timeout and is not in a join still within
// its rebalance timeout; one it has never seen is only tracked.
func TestGroupWatchDeadlines(t *testing.T) {
	w := newGroupWatch(slog.Default())
	t0 := time.Now()
	join := func(id string, at time.Time) {
		w.observe(&kmsg.JoinGroupRequest{Group: "g", MemberID: id, SessionTimeoutMillis: 10_000, RebalanceTimeoutMillis: 40_000})
		w.seen["g"][id].last, w.seen["g"][id].joined = at, at
	}
	join("heartbeating", t0.Add(-time.Minute))
	join("silent", t0.Add(-time.Minute))
	join("joining", t0.Add(-30*time.Second)) // silent for 30s, but its join may still be answered
	w.observe(&kmsg.HeartbeatRequest{Group: "g", MemberID: "heartbeating"})
	described := []kmsg.DescribeGroupsResponseGroupMember{
		{MemberID: "heartbeating"}, {MemberID: "silent"}, {MemberID: "joining"}, {MemberID: "unseen"},
	}
	got := w.silent("g", described, time.Now())
	if len(got) != 1 || got[0] != "silent" {
		t.Fatalf("removed %v, want only the member silent past its session and rebalance timeouts", got)
	}
	// 13s on, the joining member's rebalance timeout (40s + 2s grace since
	// its join 30s ago) has passed; the unseen one, first seen now, has
	// the long default session.
	w.seen["g"]["heartbeating"].last = time.Now().Add(12 * time.Second) // it goes on heartbeating
	got = w.silent("g", described, time.Now().Add(13*time.Second))
	if len(got) != 1 || got[0] != "joining" {
		t.Fatalf("removed %v 13s later, want only the member whose join has outlived its rebalance timeout", got)
	}
	// A member that left is forgotten.
	w.observe(&kmsg.LeaveGroupRequest{Group: "g", Members: []kmsg.LeaveGroupRequestMember{{MemberID: "heartbeating"}}})
	if _, ok := w.seen["g"]["heartbeating"]; ok {
		t.Fatal("a member that left is still tracked")
	}
}
