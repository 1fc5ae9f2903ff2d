package queues

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sluicehq/sluice/consumers"
	"github.com/sluicehq/sluice/handlers"
)

// pgsource.go: the engine's source for a PostgreSQL topic. It reads
// watermill-sql's tables (the messages table watermill_<topic> and the
// group's row in watermill_offsets_<topic>, the same schema, order and
// visibility rule as watermill-sql's subscriber) as a log, the way the
// engine reads a Kafka partition, instead of through watermill-sql's
// Subscriber.
//
// Why: watermill-sql's subscriber keeps a transaction open, holding the
// group's offsets row FOR UPDATE, for as long as a message of its batch is
// in hand, and hands over the batch's rows one at a time, each only once
// the previous one is acknowledged. A group therefore has one message in
// flight, across all subscriptions and nodes; every other subscription
// waits on the row lock holding a pooled connection (which starved the
// node's publishing and health checks); and a message held while the
// breaker is open holds everything until the ack deadline. With one
// message in flight, a handler's first messages also run out of attempts
// before the breaker has seen enough requests to open, so an outage
// dead-lettered them.
//
// Here one node at a time owns the group (a session-level advisory lock on
// a connection of its own, released when the session ends or the node
// dies); it reads rows past the group's position in (transaction_id,
// offset) order, only from transactions older than every running one
// (transaction_id < pg_snapshot_xmin), as watermill-sql does; the engine
// runs them concurrently; and the group's position in the offsets table
// moves past each row once it and every row before it are finished
// (handled or dead-lettered), written as soon as it moves. A node killed
// with kill -9 loses the lock with its connection; the next owner
// starts at the stored position. A reader hands over at most window rows
// past the stored position (twice the handler's concurrency), so that
// bounds what a kill delivers again, whatever rows were slow.

// pgPos is a position in a topic: the row (transaction_id, offset).
type pgPos struct {
	tx  string // xid8, as text
	off int64
}

// pgFetchBatch is how many rows one query reads.
const pgFetchBatch = 100

// pgPollInterval is how long a reader waits before asking again when no
// row is ready.
const pgPollInterval = 200 * time.Millisecond

type pgSource struct {
	d            *postgresDriver
	topic, group string
	window       int64
	log          *slog.Logger
}

func (d *postgresDriver) source(spec handlers.Spec, log *slog.Logger) (consumers.Source, error) {
	if err := checkTableTopic(spec.Topic); err != nil {
		return nil, err
	}
	if spec.StartFrom == handlers.StartLatest {
		return nil, fmt.Errorf("startFrom latest: not supported on postgres (a group starts at the table's first row)")
	}
	if log == nil {
		log = d.cfg.Logger
	}
	window := int64(2 * min(max(1, spec.Concurrency.Max), 512))
	return &pgSource{d: d, topic: spec.Topic, group: spec.Group(), window: window, log: log.With("source", "postgres", "topic", spec.Topic)}, nil
}

func (s *pgSource) offsetsTable() string { return pgOffsetsTable(s.topic) }

// lockKey names the group's ownership lock.
func (s *pgSource) lockKey() string { return "sluice/" + s.topic + "/" + s.group }

// Consume implements consumers.Source: it connects, provisions, waits to
// own the group, then runs one session until ctx is done or the
// connection holding the ownership fails.
func (s *pgSource) Consume(ctx context.Context, session func(consumers.Session), report func(error)) error {
	if report == nil {
		report = func(error) {}
	}
	fail := func(err error) error { return fmt.Errorf("postgres source %s: %w", s.topic, err) }
	db, err := stdsql.Open("pgx", s.d.cfg.PostgresURL)
	if err != nil {
		return fail(fmt.Errorf("postgres-url: %w", err))
	}
	defer db.Close()
	// The ownership lock's connection, the reads and the position's writes.
	db.SetMaxOpenConns(3)
	db.SetMaxIdleConns(3)
	openCtx, cancelOpen := context.WithTimeout(ctx, 15*time.Second)
	defer cancelOpen()
	if err := db.PingContext(openCtx); err != nil {
		return fail(fmt.Errorf("postgres at %s: %w", redactURL(s.d.cfg.PostgresURL), err))
	}
	if err := s.d.provision(openCtx, db, s.topic); err != nil {
		return fail(err)
	}
	if _, err := db.ExecContext(openCtx, `INSERT INTO `+s.offsetsTable()+
		` (consumer_group, offset_acked, last_processed_transaction_id) VALUES ($1, 0, '0') ON CONFLICT DO NOTHING`, s.group); err != nil {
		return fail(fmt.Errorf("creating the position of group %s: %w", s.group, err))
	}
	cancelOpen()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	// Own the group: one node at a time reads it.
	for waiting := false; ; waiting = true {
		var got bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, s.lockKey()).Scan(&got); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fail(err)
		}
		if got {
			break
		}
		if !waiting {
			s.log.Info("another node reads this group; waiting to take over")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(uctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, s.lockKey())
	}()
	var start pgPos
	if err := db.QueryRowContext(ctx, `SELECT last_processed_transaction_id::text, offset_acked FROM `+s.offsetsTable()+
		` WHERE consumer_group = $1`, s.group).Scan(&start.tx, &start.off); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fail(fmt.Errorf("reading the position of group %s: %w", s.group, err))
	}
	report(nil)

	sessCtx, endSession := context.WithCancelCause(ctx)
	defer endSession(nil)
	rd := &pgReader{s: s, db: db, read: start, pos: map[int64]pgPos{}, done: map[int64]bool{}, stored: start,
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1), report: report}
	rd.committed = start
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); rd.writer(sessCtx) }()
	go s.watch(sessCtx, conn, report, endSession)
	session(&pgSession{ctx: sessCtx, topic: s.topic, rd: rd})
	endSession(nil)
	<-writerDone
	rd.flush()
	if cause := context.Cause(sessCtx); ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// watch pings the connection that holds the ownership every 2s; when it
// fails the ownership may be lost, so the session ends (and Consume
// starts over).
func (s *pgSource) watch(ctx context.Context, conn *stdsql.Conn, report func(error), end context.CancelCauseFunc) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := conn.PingContext(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			err = fmt.Errorf("postgres server for %s: %w", s.topic, err)
			report(err)
			end(err)
			return
		}
	}
}

type pgSession struct {
	ctx   context.Context
	topic string
	rd    *pgReader
}

func (p *pgSession) Context() context.Context { return p.ctx }

func (p *pgSession) Assignments() []consumers.Assignment {
	return []consumers.Assignment{{Topic: p.topic, Partition: 0, Offset: 0}}
}

func (p *pgSession) Reader(consumers.Assignment) (consumers.PartitionReader, error) { return p.rd, nil }

// Commit does nothing: the reader stores the group's position as messages
// settle.
func (p *pgSession) Commit(context.Context, map[string]map[int]int64) error { return nil }

// pgRow is one row read and not yet handed over.
type pgRow struct {
	pos      pgPos
	uuid     string
	payload  []byte
	metadata []byte
}

// pgReader hands over the topic's rows, numbered 0, 1, 2... for the
// engine, and moves the group's position as they settle.
type pgReader struct {
	s       *pgSource
	db      *stdsql.DB
	report  func(error)
	failing atomic.Bool // an error was reported and no success since

	// Fetch's own: the rows read ahead, the position of the last row read.
	buf  []pgRow
	read pgPos

	mu        sync.Mutex
	next      int64           // the next number to hand over
	storedLow int64           // the first number past the stored position
	room      chan struct{}   // a store made room in the window
	pos       map[int64]pgPos // fetched, not yet passed by the position
	done      map[int64]bool  // settled final, not yet passed
	low       int64           // the first number not yet settled final
	stuck     bool            // a message was given back: the position stays before it
	committed pgPos           // the position to store
	stored    pgPos           // the position stored
	wake      chan struct{}
}

func (r *pgReader) Fetch(ctx context.Context, m *handlers.Message) error {
	for {
		r.mu.Lock()
		full := r.next-r.storedLow >= r.s.window
		r.mu.Unlock()
		if !full {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.room:
		}
	}
	for len(r.buf) == 0 {
		if err := r.query(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.fail(err)
			return err
		}
		r.ok()
		if len(r.buf) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pgPollInterval):
		}
	}
	row := r.buf[0]
	r.buf = r.buf[1:]
	r.mu.Lock()
	seq := r.next
	r.next++
	r.pos[seq] = row.pos
	r.mu.Unlock()
	wm := message.NewMessage(row.uuid, row.payload)
	if len(row.metadata) > 0 {
		md := map[string]any{}
		if err := json.Unmarshal(row.metadata, &md); err == nil {
			for k, v := range md {
				if s, ok := v.(string); ok {
					wm.Metadata.Set(k, s)
				} else if b, err := json.Marshal(v); err == nil {
					wm.Metadata.Set(k, string(b))
				}
			}
		} else {
			wm.Metadata.Set("metadata", string(row.metadata))
		}
	}
	*m = handlers.Message{}
	Decode(wm, m)
	m.Topic, m.Partition, m.Offset = r.s.topic, 0, seq
	return nil
}

// query reads the next rows past the last one read, in watermill-sql's
// order, from committed transactions older than every running one: a
// transaction still running may yet commit rows that sort before.
func (r *pgReader) query(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := r.db.QueryContext(qctx, `SELECT "offset", transaction_id::text, uuid, payload, metadata::text FROM `+
		pgSchema().MessagesTable(r.s.topic)+`
		WHERE ((transaction_id = $1::xid8 AND "offset" > $2) OR transaction_id > $1::xid8)
		  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY transaction_id ASC, "offset" ASC LIMIT $3`, r.read.tx, r.read.off, pgFetchBatch)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var row pgRow
		var md stdsql.NullString
		if err := rows.Scan(&row.pos.off, &row.pos.tx, &row.uuid, &row.payload, &md); err != nil {
			return err
		}
		row.metadata = []byte(md.String)
		r.buf = append(r.buf, row)
	}
	if err := rows.Err(); err != nil {
		r.buf = nil
		return err
	}
	if n := len(r.buf); n > 0 {
		r.read = r.buf[n-1].pos
	}
	return nil
}

// Settle implements consumers.Settler: the position moves past every
// message settled final with all before it; a message given back holds it
// for the rest of the session (the next owner starts there).
func (r *pgReader) Settle(seq int64, final bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !final {
		r.stuck = true
		return
	}
	r.done[seq] = true
	moved := false
	for !r.stuck && r.done[r.low] {
		r.committed = r.pos[r.low]
		delete(r.done, r.low)
		delete(r.pos, r.low)
		r.low++
		moved = true
	}
	if moved {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

func (r *pgReader) Close() error { return nil }

// fail reports err as the handler's state until a query succeeds again.
func (r *pgReader) fail(err error) {
	r.failing.Store(true)
	r.report(fmt.Errorf("postgres server for %s: %w", r.s.topic, err))
}

// ok clears a reported error.
func (r *pgReader) ok() {
	if r.failing.CompareAndSwap(true, false) {
		r.report(nil)
	}
}

// writer stores the position each time it moves, until ctx is done.
func (r *pgReader) writer(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for {
			err := r.store(ctx)
			if err == nil || ctx.Err() != nil {
				if err == nil {
					r.ok()
				}
				backoff = 100 * time.Millisecond
				break
			}
			r.s.log.Warn("storing the group's position failed; retrying", "err", err)
			r.fail(err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// store writes the position if it moved since the last write.
func (r *pgReader) store(ctx context.Context) error {
	r.mu.Lock()
	p, low := r.committed, r.low
	r.mu.Unlock()
	if p == r.stored {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.db.ExecContext(sctx, `UPDATE `+r.s.offsetsTable()+
		` SET offset_acked = $1, last_processed_transaction_id = $2::xid8 WHERE consumer_group = $3`, p.off, p.tx, r.s.group); err != nil {
		return err
	}
	r.stored = p
	r.mu.Lock()
	r.storedLow = low
	r.mu.Unlock()
	select {
	case r.room <- struct{}{}:
	default:
	}
	return nil
}

// flush stores the final position once the session is over (the engine
// has settled what it finished), before the ownership is released.
func (r *pgReader) flush() {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := r.store(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.s.log.Error("storing the group's final position failed; the messages finished since the last store will be delivered again", "err", err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
