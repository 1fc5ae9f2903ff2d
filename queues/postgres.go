package queues

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"regexp"
	"sync"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
)

// postgres.go: PostgreSQL tables through watermill-sql, with its default
// PostgreSQL schema and offsets. A topic is the table watermill_<topic>;
// a handler's progress is its row in watermill_offsets_<topic>. Sluice
// creates both, and gives the messages table defaults for uuid and
// transaction_id, so that a plain
//
//	INSERT INTO "watermill_orders" (payload, metadata) VALUES ('...', '{"key":"c-1"}');
//
// is a message. The payload column is BYTEA (any bytes, not only JSON).
//
// Mapping: payload is the payload; metadata (a JSON object of strings) is
// the headers; its "key" is the key; uuid is the Ref.
//
// watermill-sql lets one consumer of a group progress at a time, and
// reads one message at a time: a handler on PostgreSQL runs one message
// at a time across its nodes, whatever its concurrency.

type postgresDriver struct {
	cfg Config

	mu  sync.Mutex
	db  *stdsql.DB
	pub *wmsql.Publisher
}

func newPostgres(cfg Config) (*postgresDriver, error) { return &postgresDriver{cfg: cfg}, nil }

// tableTopic is what watermill-sql accepts as a topic (it becomes part of
// a table name).
var tableTopic = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// pgBatch is how many rows watermill-sql reads at once. The batch's
// offsets are stored when it ends, so a node killed mid-batch has the
// whole batch delivered again: it bounds a kill's duplicates.
const pgBatch = 10

func pgSchema() wmsql.DefaultPostgreSQLSchema {
	return wmsql.DefaultPostgreSQLSchema{GeneratePayloadType: func(string) string { return "BYTEA" }, SubscribeBatchSize: pgBatch}
}

func (d *postgresDriver) open() (*stdsql.DB, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db != nil {
		return d.db, nil
	}
	db, err := stdsql.Open("pgx", d.cfg.PostgresURL)
	if err != nil {
		return nil, fmt.Errorf("postgres-url: %w", err)
	}
	// The server's connections are shared by everything on it: keep the
	// pool small.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	pub, err := wmsql.NewPublisher(wmsql.BeginnerFromStdSQL(db), wmsql.PublisherConfig{
		SchemaAdapter: pgSchema(), AutoInitializeSchema: true,
	}, wmLogger(d.cfg.Logger))
	if err != nil {
		db.Close()
		return nil, err
	}
	d.db, d.pub = db, pub
	return db, nil
}

func checkTableTopic(topic string) error {
	if !tableTopic.MatchString(topic) {
		return fmt.Errorf("topic %q: a postgres topic is part of a table name: use a-z A-Z 0-9 _ -", topic)
	}
	return nil
}

// provision creates the topic's tables, and the defaults that let a plain
// INSERT write a message.
func (d *postgresDriver) provision(ctx context.Context, db *stdsql.DB, topic string) error {
	qs, err := pgSchema().SchemaInitializingQueries(wmsql.SchemaInitializingQueriesParams{Topic: topic})
	if err != nil {
		return err
	}
	oqs, err := wmsql.DefaultPostgreSQLOffsetsAdapter{}.SchemaInitializingQueries(wmsql.OffsetsSchemaInitializingQueriesParams{Topic: topic})
	if err != nil {
		return err
	}
	qs = append(qs, oqs...)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range qs {
		if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
			return fmt.Errorf("creating the tables of %s: %w", topic, err)
		}
	}
	table := pgSchema().MessagesTable(topic)
	if _, err := tx.ExecContext(ctx, `ALTER TABLE `+table+` ALTER COLUMN "uuid" SET DEFAULT gen_random_uuid()::text,
		ALTER COLUMN "transaction_id" SET DEFAULT pg_current_xact_id()`); err != nil {
		return fmt.Errorf("setting the defaults of %s: %w", table, err)
	}
	return tx.Commit()
}

func (d *postgresDriver) subscriber(ctx context.Context, topic, group string, _ int, latest bool) (message.Subscriber, error) {
	if err := checkTableTopic(topic); err != nil {
		return nil, err
	}
	if latest {
		return nil, fmt.Errorf("startFrom latest: not supported on postgres (a group starts at the table's first row)")
	}
	db, err := d.open()
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("postgres at %s: %w", redactURL(d.cfg.PostgresURL), err)
	}
	if err := d.provision(ctx, db, topic); err != nil {
		return nil, err
	}
	deadline := d.cfg.RedeliverAfter
	return wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db), wmsql.SubscriberConfig{
		ConsumerGroup:  group,
		AckDeadline:    &deadline,
		PollInterval:   200 * time.Millisecond,
		ResendInterval: time.Second,
		SchemaAdapter:  pgSchema(),
		OffsetsAdapter: wmsql.DefaultPostgreSQLOffsetsAdapter{},
	}, wmLogger(d.cfg.Logger))
}

func (d *postgresDriver) publish(ctx context.Context, topic string, msgs []*message.Message) error {
	if err := checkTableTopic(topic); err != nil {
		return err
	}
	if _, err := d.open(); err != nil {
		return err
	}
	return orAfter(ctx, func() error { return d.pub.Publish(topic, msgs...) })
}

func (d *postgresDriver) ping(ctx context.Context) error {
	db, err := d.open()
	if err != nil {
		return err
	}
	return db.PingContext(ctx)
}

// backlog counts the rows past the group's acked offset; watermill-sql
// keeps no count of rows in hand.
func (d *postgresDriver) backlog(ctx context.Context, topic, group string) (Backlog, error) {
	db, err := d.open()
	if err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	var n int64
	q := `SELECT count(*) FROM ` + pgSchema().MessagesTable(topic) + ` WHERE "offset" > COALESCE((SELECT offset_acked FROM ` +
		wmsql.DefaultPostgreSQLOffsetsAdapter{}.MessagesOffsetsTable(topic) + ` WHERE consumer_group = $1), 0)`
	if err := db.QueryRowContext(ctx, q, group).Scan(&n); err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	return Backlog{Waiting: n, Unacked: -1}, nil
}

func (d *postgresDriver) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db != nil {
		_ = d.pub.Close()
		return d.db.Close()
	}
	return nil
}
