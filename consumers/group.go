package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// group.go is this node's membership in one handler's consumer group: the
// classic (eager) Kafka group protocol, spoken through kafka-go's Client.
// It replaces kafka-go's ConsumerGroup, whose membership piled up and
// livelocked under churn (docs/architecture.md, "Group membership"):
//
//   - A member keeps one member id for its whole life. It rejoins with it
//     after every generation and after a join that failed or timed out, and
//     it leaves with it when it stops, so the coordinator never holds stale
//     ids of this process.
//   - It heartbeats from its first join until it leaves, on a connection of
//     its own: while it drains a revoked assignment and while its JoinGroup
//     waits for the others. A live member is never expired in the middle of
//     a rebalance, so its final commit is accepted and its join answered.
//   - A commit that the coordinator rejects for the generation (unknown
//     member, illegal generation, fenced instance) is final (ErrFenced):
//     it is never retried, and the session ends at once.
//   - A join is sent once and waits as long as the group needs (up to
//     StallAfter): re-sending it is itself a change of the group, and on
//     the embedded broker every change restarts the rebalance timer.
//   - A group that has not formed within StallAfter is abandoned with a
//     leave and joined afresh.
//
// JoinGroup, SyncGroup, Heartbeat and LeaveGroup go through franz-go's
// protocol client (kgo's Request, with kmsg types), for three faults of
// kafka-go v0.4.51's Client: Heartbeat and LeaveGroup decode the error
// code from the throttle field for every version above 0 (so
// REBALANCE_IN_PROGRESS and UNKNOWN_MEMBER_ID read as success); Heartbeat
// is not routed to the group coordinator; and JoinGroup fails the leader's
// whole join when one member's subscription is not in the exact form it
// expects (kafka-go's own ConsumerGroup writes such subscriptions).
// Commits, committed offsets, metadata and all fetching are kafka-go.

// ErrFenced means the group no longer accepts this member's commits for its
// generation: the partitions may already belong to someone else. Retrying
// cannot help; what was not committed is redelivered to the next owner.
var ErrFenced = errors.New("the consumer group no longer accepts this member's commits")

// rangeProtocol is the assignor every Sluice member offers: ranges of
// partitions per topic, the same as kafka-go's and Kafka's "range".
const rangeProtocol = "range"

type member struct {
	cfg    KafkaConfig
	group  string
	topics []string
	// ctl sends commits and reads offsets and metadata.
	ctl   *kafka.Client
	ctlTr *kafka.Transport
	// joinc sends JoinGroup and SyncGroup, hb heartbeats and leaves: the
	// membership protocol (see above), each on connections of its own, so
	// heartbeats never queue behind a join that waits for the whole group.
	joinc, hb *kgo.Client
	log       *slog.Logger

	mu       sync.Mutex
	memberID string
	genID    int
	synced   bool        // memberID has been in a generation
	gen      *generation // the running generation; nil between them
	// joinCancel ends the JoinGroup under way (sent as joinID), if any: the
	// heartbeat calls it when the coordinator no longer knows that member.
	joinCancel context.CancelFunc
	joinID     string
}

// generation is one assignment of this member.
type generation struct {
	id       int
	memberID string
	leader   bool
	assigned map[string][]int
	offsets  map[string]map[int]int64
	// attempts are the crash-loop counts recorded with the committed
	// offsets (attemptsMetadata); absent where there is none.
	attempts map[string]map[int]int
	revoke   context.CancelFunc
	fenced   atomic.Bool
	revoked  atomic.Bool
}

func (g *generation) fence() {
	g.fenced.Store(true)
	g.revoke()
}

func newMember(cfg KafkaConfig, group string, topics []string) (*member, error) {
	mk := func() (*kafka.Transport, *kafka.Client) {
		tr := &kafka.Transport{ClientID: cfg.ClientID, IdleTimeout: 5 * cfg.SessionTimeout}
		if cfg.Dialer != nil {
			tr.Dial = cfg.Dialer.DialFunc
			tr.TLS, tr.SASL = cfg.Dialer.TLS, cfg.Dialer.SASLMechanism
			if tr.ClientID == "" {
				tr.ClientID = cfg.Dialer.ClientID
			}
		}
		// No client-wide timeout: each call carries its own deadline.
		return tr, &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: tr}
	}
	m := &member{cfg: cfg, group: group, topics: topics, log: cfg.Logger.With("group", group)}
	m.ctlTr, m.ctl = mk()
	client := func(overhead time.Duration) (*kgo.Client, error) {
		opts := []kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.RequestTimeoutOverhead(overhead), kgo.RequestRetries(0)}
		if cfg.ClientID != "" {
			opts = append(opts, kgo.ClientID(cfg.ClientID))
		}
		if cfg.Dialer != nil && cfg.Dialer.DialFunc != nil {
			opts = append(opts, kgo.Dialer(cfg.Dialer.DialFunc))
		}
		if cfg.Dialer != nil && cfg.Dialer.TLS != nil {
			if cfg.Dialer.DialFunc != nil {
				return nil, fmt.Errorf("group %s: a Dialer with both DialFunc and TLS", group)
			}
			opts = append(opts, kgo.DialTLSConfig(cfg.Dialer.TLS.Clone()))
		}
		if cfg.GroupSASL != nil {
			opts = append(opts, kgo.SASL(cfg.GroupSASL))
		}
		c, err := kgo.NewClient(opts...)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", group, err)
		}
		return c, nil
	}
	var err error
	if m.hb, err = client(cfg.SessionTimeout / 2); err != nil {
		return nil, err
	}
	// A join waits for the whole group; its own deadline (StallAfter) is
	// what bounds it, not kgo's read timeout.
	if m.joinc, err = client(cfg.StallAfter); err != nil {
		m.hb.Close()
		return nil, err
	}
	return m, nil
}

func (m *member) close() {
	m.ctlTr.CloseIdleConnections()
	m.hb.Close()
	m.joinc.Close()
}

func (m *member) instanceID() *string {
	if m.cfg.InstanceID == "" {
		return nil
	}
	return &m.cfg.InstanceID
}

// sendHeartbeat returns the coordinator's answer to one heartbeat.
func (m *member) sendHeartbeat(ctx context.Context, id string, genID int) error {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.Generation, req.MemberID, req.InstanceID = m.group, int32(genID), id, m.instanceID()
	resp, err := req.RequestWith(ctx, m.hb)
	if err != nil {
		return err
	}
	return asKafkaError(resp.ErrorCode)
}

// asKafkaError maps a Kafka error code to kafka-go's error of that code, so
// that every caller tests errors one way.
func asKafkaError(code int16) error {
	if code == 0 {
		return nil
	}
	if kerr.ErrorForCode(code) == nil {
		return nil
	}
	return kafka.Error(code)
}

func (m *member) id() (string, int, *generation) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced {
		return m.memberID, -1, m.gen
	}
	return m.memberID, m.genID, m.gen
}

func (m *member) setGeneration(g *generation) {
	m.mu.Lock()
	m.gen = g
	if g != nil {
		m.genID, m.synced = g.id, true
	}
	m.mu.Unlock()
}

// forget drops the member id if it is still id: the coordinator no longer
// knows it, so the next join starts afresh.
func (m *member) forget(id string) {
	m.mu.Lock()
	if m.memberID == id {
		m.memberID = ""
		m.genID, m.synced = 0, false
	}
	m.mu.Unlock()
}

// heartbeat keeps the membership alive until ctx is done. It revokes the
// running generation when the group rebalances, and fences it when the
// coordinator has dropped it.
func (m *member) heartbeat(ctx context.Context) {
	t := time.NewTicker(m.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		id, genID, g := m.id()
		if id == "" {
			continue // not a member yet
		}
		hctx, cancel := context.WithTimeout(ctx, m.cfg.SessionTimeout/2)
		err := m.sendHeartbeat(hctx, id, genID)
		cancel()
		if genID < 0 {
			// A new member waiting for its first generation: the answer
			// (unknown member, illegal generation) means nothing yet, but
			// the heartbeat shows a coordinator that watches for silent
			// members (the embedded broker's group watch) that this one
			// is alive.
			continue
		}
		switch {
		case err == nil:
		case errors.Is(err, kafka.RebalanceInProgress):
			if g != nil && g.revoked.CompareAndSwap(false, true) {
				m.log.Info("group is rebalancing; draining the assignment", "generation", g.id)
				g.revoke()
			}
		case errors.Is(err, kafka.IllegalGeneration):
			// Between generations the old id is expected to be stale.
			if g != nil && g.id == genID {
				m.log.Warn("the group moved on without this member; its generation is fenced", "generation", genID)
				g.fence()
			}
		case errors.Is(err, kafka.UnknownMemberId), errors.Is(err, kafka.FencedInstanceID):
			if g != nil {
				m.log.Warn("the coordinator dropped this member; its generation is fenced", "generation", g.id, "err", err)
				g.fence()
			}
			m.forget(id)
			m.mu.Lock()
			if m.joinCancel != nil && m.joinID == id {
				m.joinCancel() // the join waits for nothing now: rejoin afresh
			}
			m.mu.Unlock()
		default:
			if ctx.Err() == nil {
				m.log.Debug("heartbeat failed; retrying", "err", err)
			}
		}
	}
}

// joinAndSync joins the group (or rejoins with the member id it has) and
// returns the next generation with its assignment and committed offsets.
func (m *member) joinAndSync(ctx context.Context) (*generation, error) {
	meta := kmsg.ConsumerMemberMetadata{Version: 0, Topics: m.topics, UserData: m.cfg.MemberData}
	for attempt := 0; ; attempt++ {
		if attempt > 0 && !sleepCtx(ctx, min(time.Duration(attempt)*100*time.Millisecond, time.Second)) {
			return nil, ctx.Err()
		}
		if attempt > 50 {
			return nil, fmt.Errorf("joining group %s: no stable answer after %d attempts", m.group, attempt)
		}
		m.mu.Lock()
		id := m.memberID
		m.mu.Unlock()
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.MemberID, req.InstanceID = m.group, id, m.instanceID()
		req.SessionTimeoutMillis = int32(m.cfg.SessionTimeout.Milliseconds())
		req.RebalanceTimeoutMillis = int32(m.cfg.RebalanceTimeout.Milliseconds())
		req.ProtocolType = "consumer"
		req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: rangeProtocol, Metadata: meta.AppendTo(nil)}}
		// The join waits as long as the group needs, up to StallAfter: the
		// coordinator answers once every member has rejoined or the
		// rebalance timeout has passed since the group's last change, and
		// the heartbeats tell us meanwhile that this member is still in.
		// Sending the join again sooner would itself be a change, and
		// restarts that wait on brokers that time it from the last one.
		jctx, cancel := context.WithTimeout(ctx, m.cfg.StallAfter)
		m.mu.Lock()
		m.joinCancel, m.joinID = cancel, id
		m.mu.Unlock()
		sent := time.Now()
		resp, err := req.RequestWith(jctx, m.joinc)
		m.mu.Lock()
		m.joinCancel = nil
		m.mu.Unlock()
		cancel()
		if err == nil {
			err = asKafkaError(resp.ErrorCode)
		}
		if err != nil && !errors.Is(err, kafka.MemberIDRequired) {
			m.log.Info("join answered with an error", "member", id, "waited", time.Since(sent).Round(time.Millisecond), "err", err)
		}
		switch {
		case err == nil:
		case errors.Is(err, kafka.MemberIDRequired):
			m.mu.Lock()
			m.memberID = resp.MemberID
			m.mu.Unlock()
			attempt = -1 // the second step of the same join, at once
			continue
		case errors.Is(err, kafka.UnknownMemberId):
			m.forget(id)
			continue
		case errors.Is(err, kafka.RebalanceInProgress), errors.Is(err, kafka.NotCoordinatorForGroup),
			errors.Is(err, kafka.GroupCoordinatorNotAvailable), errors.Is(err, kafka.GroupLoadInProgress):
			continue
		default:
			// Timed out or failed in transit: the coordinator may still hold
			// this member's join. The id is kept, so the next attempt
			// rejoins as the same member instead of adding another.
			return nil, fmt.Errorf("joining group %s: %w", m.group, err)
		}
		// Heartbeat the new generation from now on: the leader's
		// assignment and the offset fetch take time, and heartbeats of the
		// old one would not keep the session alive meanwhile.
		m.mu.Lock()
		m.memberID, m.genID, m.synced = resp.MemberID, int(resp.Generation), true
		m.mu.Unlock()

		g := &generation{id: int(resp.Generation), memberID: resp.MemberID, leader: resp.LeaderID == resp.MemberID}
		m.log.Info("join answered", "member", resp.MemberID, "generation", g.id, "leader", g.leader,
			"members", len(resp.Members), "waited", time.Since(sent).Round(time.Millisecond))
		sreq := kmsg.NewPtrSyncGroupRequest()
		sreq.Group, sreq.Generation, sreq.MemberID, sreq.InstanceID = m.group, resp.Generation, g.memberID, m.instanceID()
		sreq.ProtocolType, sreq.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr(rangeProtocol)
		if g.leader {
			if sreq.GroupAssignment, err = m.assign(ctx, resp.Members); err != nil {
				return nil, err
			}
		}
		sctx, cancel := context.WithTimeout(ctx, m.cfg.SessionTimeout+10*time.Second)
		sresp, err := sreq.RequestWith(sctx, m.joinc)
		cancel()
		if err == nil {
			err = asKafkaError(sresp.ErrorCode)
		}
		if err != nil {
			m.log.Info("sync answered with an error", "member", g.memberID, "generation", g.id, "err", err)
		}
		switch {
		case err == nil:
		case errors.Is(err, kafka.RebalanceInProgress), errors.Is(err, kafka.IllegalGeneration):
			continue
		case errors.Is(err, kafka.UnknownMemberId):
			m.forget(g.memberID)
			continue
		default:
			return nil, fmt.Errorf("syncing group %s: %w", m.group, err)
		}
		var asg kmsg.ConsumerMemberAssignment
		if len(sresp.MemberAssignment) > 0 {
			if err := asg.ReadFrom(sresp.MemberAssignment); err != nil {
				return nil, fmt.Errorf("syncing group %s: reading this member's assignment: %w", m.group, err)
			}
		}
		g.assigned = make(map[string][]int, len(asg.Topics))
		for _, t := range asg.Topics {
			for _, p := range t.Partitions {
				g.assigned[t.Topic] = append(g.assigned[t.Topic], int(p))
			}
		}
		if g.offsets, g.attempts, err = m.committed(ctx, g.assigned); err != nil {
			return nil, err
		}
		return g, nil
	}
}

// assign is the leader's part: ranges of each topic's partitions over the
// members subscribed to it.
func (m *member) assign(ctx context.Context, members []kmsg.JoinGroupResponseMember) ([]kmsg.SyncGroupRequestGroupAssignment, error) {
	topicSet := map[string]bool{}
	gms := make([]kafka.GroupMember, 0, len(members))
	for _, mb := range members {
		topics := subscribedTopics(mb.ProtocolMetadata)
		gms = append(gms, kafka.GroupMember{ID: mb.MemberID, Topics: topics})
		for _, t := range topics {
			topicSet[t] = true
		}
	}
	topics := make([]string, 0, len(topicSet))
	for t := range topicSet {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	parts, err := m.partitions(ctx, topics)
	if err != nil {
		return nil, err
	}
	var all []kafka.Partition
	for t, n := range parts {
		for i := 0; i < n; i++ {
			all = append(all, kafka.Partition{Topic: t, ID: i})
		}
	}
	plan := kafka.RangeGroupBalancer{}.AssignGroups(gms, all)
	out := make([]kmsg.SyncGroupRequestGroupAssignment, 0, len(members))
	for _, mb := range members {
		asg := kmsg.ConsumerMemberAssignment{Version: 0}
		ts := make([]string, 0, len(plan[mb.MemberID]))
		for t := range plan[mb.MemberID] {
			ts = append(ts, t)
		}
		sort.Strings(ts)
		for _, t := range ts {
			ps := plan[mb.MemberID][t]
			at := kmsg.ConsumerMemberAssignmentTopic{Topic: t, Partitions: make([]int32, len(ps))}
			for i, p := range ps {
				at.Partitions[i] = int32(p)
			}
			asg.Topics = append(asg.Topics, at)
		}
		out = append(out, kmsg.SyncGroupRequestGroupAssignment{MemberID: mb.MemberID, MemberAssignment: asg.AppendTo(nil)})
	}
	return out, nil
}

// subscribedTopics reads the topics of a member's subscription: the
// version, then the topic array, whatever follows. It is lenient on
// purpose: clients write the later fields inconsistently (kafka-go's
// ConsumerGroup writes version 1 without owned partitions), and a
// subscription that cannot be read subscribes to nothing rather than
// failing the whole group.
func subscribedTopics(b []byte) []string {
	if len(b) < 6 {
		return nil
	}
	b = b[2:] // version
	n := int(int32(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])))
	b = b[4:]
	if n < 0 || n > 100000 {
		return nil
	}
	topics := make([]string, 0, n)
	for i := 0; i < n; i++ {
		if len(b) < 2 {
			return topics
		}
		l := int(int16(uint16(b[0])<<8 | uint16(b[1])))
		b = b[2:]
		if l < 0 || l > len(b) {
			return topics
		}
		topics = append(topics, string(b[:l]))
		b = b[l:]
	}
	return topics
}

// partitions returns the partition count of each topic that exists.
func (m *member) partitions(ctx context.Context, topics []string) (map[string]int, error) {
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	md, err := m.ctl.Metadata(mctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("reading partitions of %v: %w", topics, err)
	}
	out := make(map[string]int, len(md.Topics))
	for _, t := range md.Topics {
		if t.Error == nil {
			out[t.Name] = len(t.Partitions)
		}
	}
	return out, nil
}

// committed returns the group's committed offset of each assigned
// partition, or -1 where it has none, and the crash-loop count recorded
// with it where there is one.
func (m *member) committed(ctx context.Context, assigned map[string][]int) (map[string]map[int]int64, map[string]map[int]int, error) {
	out := make(map[string]map[int]int64, len(assigned))
	attempts := map[string]map[int]int{}
	if len(assigned) == 0 {
		return out, attempts, nil
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := m.ctl.OffsetFetch(fctx, &kafka.OffsetFetchRequest{GroupID: m.group, Topics: assigned})
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading committed offsets of group %s: %w", m.group, err)
	}
	for t, ps := range assigned {
		out[t] = make(map[int]int64, len(ps))
		for _, p := range ps {
			out[t][p] = -1
		}
	}
	for t, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, nil, fmt.Errorf("reading committed offset of %s/%d: %w", t, p.Partition, p.Error)
			}
			if _, ok := out[t]; ok {
				out[t][p.Partition] = p.CommittedOffset
				if n := parseAttempts(p.Metadata); n > 0 && p.CommittedOffset >= 0 {
					if attempts[t] == nil {
						attempts[t] = map[int]int{}
					}
					attempts[t][p.Partition] = n
				}
			}
		}
	}
	return out, attempts, nil
}

// commit stores offsets for generation g. A rejection of the generation is
// ErrFenced, and fences g.
func (m *member) commit(ctx context.Context, g *generation, offsets map[string]map[int]int64) error {
	return m.commitWith(ctx, g, offsets, nil)
}

// commitWith is commit with metadata stored beside some of the offsets.
func (m *member) commitWith(ctx context.Context, g *generation, offsets map[string]map[int]int64, meta map[string]map[int]string) error {
	if g.fenced.Load() {
		return fmt.Errorf("committing offsets for group %s: %w", m.group, ErrFenced)
	}
	req := &kafka.OffsetCommitRequest{
		GroupID: m.group, GenerationID: g.id, MemberID: g.memberID, InstanceID: m.cfg.InstanceID,
		Topics: make(map[string][]kafka.OffsetCommit, len(offsets)),
	}
	for t, ps := range offsets {
		for p, off := range ps {
			req.Topics[t] = append(req.Topics[t], kafka.OffsetCommit{Partition: p, Offset: off, Metadata: meta[t][p]})
		}
	}
	resp, err := m.ctl.OffsetCommit(ctx, req)
	if err != nil {
		return fmt.Errorf("committing offsets for group %s: %w", m.group, err)
	}
	var first error
	for t, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error == nil {
				continue
			}
			if errors.Is(p.Error, kafka.IllegalGeneration) || errors.Is(p.Error, kafka.UnknownMemberId) ||
				errors.Is(p.Error, kafka.FencedInstanceID) {
				g.fence()
				return fmt.Errorf("committing offsets for group %s: %w (%v)", m.group, ErrFenced, p.Error)
			}
			if first == nil {
				first = fmt.Errorf("committing offset of %s/%d for group %s: %w", t, p.Partition, m.group, p.Error)
			}
		}
	}
	return first
}

// leave removes this member from the group, so its partitions move at once
// rather than after the session timeout.
func (m *member) leave() {
	m.mu.Lock()
	id := m.memberID
	m.mu.Unlock()
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group, req.MemberID = m.group, id // v0-2 name one member; v3+ a list
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID, lm.InstanceID = id, m.instanceID()
	req.Members = []kmsg.LeaveGroupRequestMember{lm}
	resp, err := req.RequestWith(ctx, m.hb)
	if err == nil {
		err = asKafkaError(resp.ErrorCode)
		for _, mr := range resp.Members {
			if err == nil {
				err = asKafkaError(mr.ErrorCode)
			}
		}
	}
	if err != nil && !errors.Is(err, kafka.UnknownMemberId) {
		m.log.Warn("leaving the group failed; the coordinator drops this member after the session timeout", "err", err)
	}
	m.forget(id)
}

// watchPartitions revokes g when a subscribed topic gains partitions, so the
// next generation assigns them.
func (m *member) watchPartitions(ctx context.Context, g *generation) {
	known, err := m.partitions(ctx, m.topics)
	if err != nil {
		known = map[string]int{}
	}
	t := time.NewTicker(m.cfg.PartitionWatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		counts, err := m.partitions(ctx, m.topics)
		if err != nil {
			continue
		}
		for topic, n := range counts {
			if prev, ok := known[topic]; ok && n > prev {
				m.log.Info("topic gained partitions; rejoining", "topic", topic, "partitions", n)
				g.revoke()
				return
			}
			known[topic] = n
		}
	}
}
