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
// Publishing goes through watermill-sql's Publisher; consuming through
// Sluice's own reader of the same tables (pgsource.go), because
// watermill-sql's Subscriber keeps one message of a group in flight.

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

func pgSchema() wmsql.DefaultPostgreSQLSchema {
	return wmsql.DefaultPostgreSQLSchema{GeneratePayloadType: func(string) string { return "BYTEA" }}
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

// backlog counts the rows past the group's stored position (a table
// with no position yet: every row). It includes the rows in hand: the
// position moves past a row once it is finished.
func (d *postgresDriver) backlog(ctx context.Context, topic, group string) (Backlog, error) {
	if err := checkTableTopic(topic); err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	db, err := d.open()
	if err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	var n int64
	var oldest stdsql.NullTime
	q := `WITH p AS (SELECT COALESCE((SELECT last_processed_transaction_id FROM ` + pgOffsetsTable(topic) +
		` WHERE consumer_group = $1), '0'::xid8) AS tx, COALESCE((SELECT offset_acked FROM ` + pgOffsetsTable(topic) +
		` WHERE consumer_group = $1), 0) AS off)
		SELECT count(*), min(created_at AT TIME ZONE current_setting('TimeZone')) FROM ` + pgSchema().MessagesTable(topic) + `, p
		WHERE (transaction_id = p.tx AND "offset" > p.off) OR transaction_id > p.tx`
	if err := db.QueryRowContext(ctx, q, group).Scan(&n, &oldest); err != nil {
		return Backlog{Waiting: -1, Unacked: -1}, err
	}
	// Rows past the group's position include those in hand: the oldest of
	// them is the oldest not finished.
	return Backlog{Waiting: n, Unacked: -1, Oldest: oldest.Time}, nil
}

func pgOffsetsTable(topic string) string {
	return wmsql.DefaultPostgreSQLOffsetsAdapter{}.MessagesOffsetsTable(topic)
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
