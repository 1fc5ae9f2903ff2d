package queues

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack"
)

// redis.go: Redis Streams through watermill-redisstream. A topic is a
// stream key; a handler reads it with the consumer group sluice.<name>.
//
// Mapping of an entry's fields (any client may write them, as with
// redis-cli XADD):
//   - payload or value: the payload (payload wins when both are there);
//   - key: the key;
//   - metadata: Watermill's msgpack-encoded metadata, read as headers when
//     it decodes, else kept as the header "metadata";
//   - _watermill_message_uuid: the Ref;
//   - every other field: a header of the same name.
//
// An entry with neither payload nor value gets as payload a JSON object of
// all its fields, so XADD orders * id 7 total 12 reaches the handler as
// {"id":"7","total":"12"}.

type redisDriver struct {
	cfg  Config
	opts *redis.Options
	rc   *redis.Client // publish, ping, backlog
	pub  *redisstream.Publisher
}

func newRedis(cfg Config) (*redisDriver, error) {
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis-url %q: %w", cfg.RedisURL, err)
	}
	opts.DialTimeout = 5 * time.Second
	rc := redis.NewClient(opts)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: rc}, wmLogger(cfg.Logger))
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &redisDriver{cfg: cfg, opts: opts, rc: rc, pub: pub}, nil
}

func (d *redisDriver) subscriber(ctx context.Context, topic, group string, subs int, latest bool) (message.Subscriber, error) {
	opts := *d.opts
	// Each subscription blocks one connection in XREADGROUP; the claims and
	// acks need a few more.
	opts.PoolSize = subs + 4
	rc := redis.NewClient(&opts)
	if err := rc.Ping(ctx).Err(); err != nil {
		rc.Close()
		return nil, fmt.Errorf("redis at %s: %w", d.opts.Addr, err)
	}
	start := "0"
	if latest {
		start = "$"
	}
	// Provision the stream and the group before subscribing, so that an
	// error is ours to report rather than the adapter's to log.
	if err := rc.XGroupCreateMkStream(ctx, topic, group, start).Err(); err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		rc.Close()
		return nil, fmt.Errorf("creating group %s on stream %s: %w", group, topic, err)
	}
	consumer := uniqueName(d.cfg.Node)
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:        rc,
		Unmarshaller:  redisUnmarshaller{},
		ConsumerGroup: group,
		Consumer:      consumer,
		OldestId:      start,
		MaxIdleTime:   d.cfg.RedeliverAfter,
		ClaimInterval: min(d.cfg.RedeliverAfter/4, 5*time.Second),
		// Entries this consumer holds are in the engine's hands, however
		// long their retries take; only other (dead) consumers' are
		// claimed.
		ShouldClaimPendingMessage: func(p redis.XPendingExt) bool { return p.Consumer != consumer },
		// Block for BlockTime even at first, so that closing never waits
		// on an XREADGROUP that blocks forever.
		DisableIndefiniteInitialBlock: true,
	}, wmLogger(d.cfg.Logger))
	if err != nil {
		rc.Close()
		return nil, err
	}
	return sub, nil
}

func (d *redisDriver) publish(ctx context.Context, topic string, msgs []*message.Message) error {
	return orAfter(ctx, func() error { return d.pub.Publish(topic, msgs...) })
}

func (d *redisDriver) ping(ctx context.Context) error { return d.rc.Ping(ctx).Err() }

// backlog is XINFO GROUPS: the group's lag (entries not yet delivered)
// and pending (delivered, not acknowledged).
func (d *redisDriver) backlog(ctx context.Context, topic, group string) (Backlog, error) {
	gs, err := d.rc.XInfoGroups(ctx, topic).Result()
	if err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	for _, g := range gs {
		if g.Name == group {
			b := Backlog{Waiting: g.Lag, Unacked: g.Pending}
			b.Oldest = d.oldest(ctx, topic, group, g.Pending, g.LastDeliveredID)
			return b, nil
		}
	}
	return Backlog{Waiting: -1, Unacked: -1}, fmt.Errorf("stream %s has no group %s", topic, group)
}

// oldest is when the oldest entry the group has not finished was added:
// the first pending one (delivered, not acknowledged), else the first
// after the group's last delivered. An entry id's first part is the time
// it was added, in milliseconds, when the writer let Redis choose it
// (XADD *); zero when it cannot tell.
func (d *redisDriver) oldest(ctx context.Context, topic, group string, pending int64, lastDelivered string) time.Time {
	var id string
	if pending > 0 {
		if p, err := d.rc.XPending(ctx, topic, group).Result(); err == nil && p.Count > 0 {
			id = p.Lower
		}
	}
	if id == "" && lastDelivered != "" {
		if xs, err := d.rc.XRangeN(ctx, topic, "("+lastDelivered, "+", 1).Result(); err == nil && len(xs) == 1 {
			id = xs[0].ID
		}
	}
	ms, _, ok := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || n <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

func (d *redisDriver) close() error {
	return errors.Join(d.pub.Close(), d.rc.Close())
}

// redisUnmarshaller reads any entry (see the mapping above). It never
// fails: the adapter stops its subscription on an unmarshalling error.
type redisUnmarshaller struct{}

func (redisUnmarshaller) Unmarshal(values map[string]any) (*message.Message, error) {
	text := func(v any) string {
		switch v := v.(type) {
		case string:
			return v
		case []byte:
			return string(v)
		case nil:
			return ""
		}
		return fmt.Sprint(v)
	}
	uuid := text(values[redisstream.UUIDHeaderKey])
	var payload []byte
	if v, ok := values["payload"]; ok {
		payload = []byte(text(v))
	} else if v, ok := values["value"]; ok {
		payload = []byte(text(v))
	} else {
		all := make(map[string]string, len(values))
		for k, v := range values {
			all[k] = text(v)
		}
		payload, _ = json.Marshal(all)
	}
	wm := message.NewMessage(uuid, payload)
	for k, v := range values {
		switch k {
		case redisstream.UUIDHeaderKey, "payload", "value":
		case "metadata":
			s := text(v)
			if s == "" {
				continue
			}
			md := map[string]string{}
			if err := msgpack.Unmarshal([]byte(s), &md); err != nil {
				wm.Metadata.Set("metadata", s)
				continue
			}
			for mk, mv := range md {
				if _, set := wm.Metadata[mk]; !set {
					wm.Metadata.Set(mk, mv)
				}
			}
		default:
			wm.Metadata.Set(k, text(v))
		}
	}
	return wm, nil
}
