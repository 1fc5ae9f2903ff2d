package broker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupWatch makes up for a fault of kfake's group coordinator, found by
// the fleet-churn test (issue 8): kfake starts a member's session timer
// when it delivers the member's JoinGroup or SyncGroup answer, and when
// that delivery fails (the member's process died at that moment) the
// member is left with no timer at all. It then stays in the group for
// good, never rejoins, and a rebalance can only complete by its timeout,
// which kfake restarts on every join: a fleet whose nodes come and go more
// often than the rebalance timeout never re-forms. Apache Kafka expires
// such a member after its session timeout.
//
// groupWatch sees every group request on its way in and does what the
// coordinator should: a member that has sent nothing for longer than its
// session timeout, and that is not waiting in a join still within its
// rebalance timeout, is removed with a LeaveGroup on its behalf. Sluice's
// own members heartbeat for as long as they are in a group, while they wait
// in a join too, so a live member is never removed.
type groupWatch struct {
	log *slog.Logger
	mu  sync.Mutex
	// seen is keyed by group, then member id.
	seen map[string]map[string]*memberSeen
}

type memberSeen struct {
	last, joined       time.Time
	session, rebalance time.Duration
}

// unknownSession is the session timeout assumed for a member whose join
// the watch never saw (one restored from the data dir): longer than any
// Sluice uses.
const unknownSession = 60 * time.Second

// watchGrace is how far past its deadline a member is left alone: a
// heartbeat may be on its way.
const watchGrace = 2 * time.Second

func newGroupWatch(log *slog.Logger) *groupWatch {
	return &groupWatch{log: log, seen: map[string]map[string]*memberSeen{}}
}

// observe records a group request. It runs on the cluster's loop: it must
// not block, and it never handles the request.
func (w *groupWatch) observe(req kmsg.Request) (kmsg.Response, error, bool) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest:
		if r.MemberID != "" {
			m := w.member(r.Group, r.MemberID, now)
			m.joined = now
			m.session = time.Duration(r.SessionTimeoutMillis) * time.Millisecond
			m.rebalance = time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond
		}
	case *kmsg.SyncGroupRequest:
		w.member(r.Group, r.MemberID, now)
	case *kmsg.HeartbeatRequest:
		w.member(r.Group, r.MemberID, now)
	case *kmsg.OffsetCommitRequest:
		if r.MemberID != "" {
			w.member(r.Group, r.MemberID, now)
		}
	case *kmsg.LeaveGroupRequest:
		if r.MemberID != "" {
			delete(w.seen[r.Group], r.MemberID)
		}
		for _, m := range r.Members {
			delete(w.seen[r.Group], m.MemberID)
		}
	}
	return nil, nil, false
}

// member marks the member seen at now and returns its record.
func (w *groupWatch) member(group, id string, now time.Time) *memberSeen {
	g := w.seen[group]
	if g == nil {
		g = map[string]*memberSeen{}
		w.seen[group] = g
	}
	m := g[id]
	if m == nil {
		m = &memberSeen{session: unknownSession}
		g[id] = m
	}
	m.last = now
	return m
}

// run checks the groups every second until ctx is done.
func (w *groupWatch) run(ctx context.Context, opts []kgo.Opt) {
	cl, err := kgo.NewClient(append(opts, kgo.ClientID("sluice-embedded-groupwatch"))...)
	if err != nil {
		w.log.Error("embedded broker: group watch not started", "err", err)
		return
	}
	defer cl.Close()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.check(ctx, cl, time.Now())
	}
}

// check removes the silent members of every group.
func (w *groupWatch) check(ctx context.Context, cl *kgo.Client, now time.Time) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	groups, err := kmsg.NewPtrListGroupsRequest().RequestWith(lctx, cl)
	if err != nil || len(groups.Groups) == 0 {
		return
	}
	dreq := kmsg.NewPtrDescribeGroupsRequest()
	for _, g := range groups.Groups {
		if g.ProtocolType == "consumer" {
			dreq.Groups = append(dreq.Groups, g.Group)
		}
	}
	if len(dreq.Groups) == 0 {
		return
	}
	desc, err := dreq.RequestWith(lctx, cl)
	if err != nil {
		return
	}
	for _, g := range desc.Groups {
		for _, id := range w.silent(g.Group, g.Members, now) {
			leave := kmsg.NewPtrLeaveGroupRequest()
			leave.Group = g.Group
			leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: id}}
			resp, err := leave.RequestWith(lctx, cl)
			if err == nil {
				err = kerr.ErrorForCode(resp.ErrorCode)
			}
			w.log.Warn("embedded broker: removed a group member silent past its session timeout (kfake had kept it)",
				"group", g.Group, "member", id, "err", err)
		}
	}
}

// silent returns the described members past their deadline, and starts
// tracking those the watch has not seen yet.
func (w *groupWatch) silent(group string, members []kmsg.DescribeGroupsResponseGroupMember, now time.Time) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	live := map[string]bool{}
	for _, dm := range members {
		live[dm.MemberID] = true
		m := w.seen[group][dm.MemberID]
		if m == nil {
			// A member whose join the watch did not see with an id (a
			// static member's or an old client's first join) may be
			// waiting in it: give it a long rebalance timeout from now.
			m = w.member(group, dm.MemberID, now)
			m.joined, m.rebalance = now, unknownSession
			continue
		}
		if now.Sub(m.last) > m.session+watchGrace && now.Sub(m.joined) > m.rebalance+watchGrace {
			out = append(out, dm.MemberID)
			delete(w.seen[group], dm.MemberID)
		}
	}
	// Forget members the coordinator no longer has.
	for id, m := range w.seen[group] {
		if !live[id] && now.Sub(m.last) > time.Minute {
			delete(w.seen[group], id)
		}
	}
	return out
}
