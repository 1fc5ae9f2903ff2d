package queues

import (
	"bytes"
	"context"
	stdsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/topics"
)

// dlq_postgres.go: a dead-letter topic on PostgreSQL is an ordinary
// watermill-sql topic: the table watermill_<topic>, made by provision with
// the same schema, defaults and offsets table as a handler's topic, so
// psql, watermill-sql's subscriber or a Sluice postgres handler reads it
// like any other. A record is one row: the value is payload (BYTEA); the
// headers and the key (as "key", the mapping of docs/queues.md) are
// metadata, a JSON object of strings; uuid is a fresh Watermill UUID.
// Records are written through watermill-sql's publisher, one INSERT for a
// batch, which returns once the server has committed it.
//
// The record's offset is the row's "offset" column, a BIGSERIAL: it only
// grows, never changes, and has gaps (a failed or rolled-back insert uses
// numbers up). The time is created_at (the inserting transaction's start).
// Offsets are [min(offset), max(offset)+1); an empty table gives Start ==
// End == the number the sequence hands out next, so End never goes back
// when the table is emptied. The first write also adds an index on
// "offset" (watermill_<topic>_offset_idx; watermill-sql's primary key
// leads with transaction_id): without it, the offsets and every batch of
// a Read would scan the table.
//
// Reads are plain SELECTs of the rows with from <= offset < to, by
// offset, in batches: they see committed rows only, and take no lock nor
// position, so listing consumes nothing. A caveat of sequence numbers: a
// row takes its number when inserted, not when committed, so an insert
// still running can commit a row below an offset already listed. For a
// list of dead letters that only means an entry that was not yet there
// appears at the next list (where its number sorts); a reader that would
// follow the topic from the last End it saw could miss it. Our own writes
// are single statements, so that window is one INSERT long.
//
// What is read back may have been written by any client: a payload or a
// metadata larger than the bounds below is not fetched (the row is
// skipped, or read without headers), metadata that is not a JSON object
// of strings keeps only its string values (not an object at all: the raw
// text as the header "metadata", as the postgres source does), and at
// most maxHeaders headers of at most maxHeaderBytes are kept.
//
// Headers are JSON strings: a header value that is not valid UTF-8 reads
// back with U+FFFD in place of its bad bytes, and a header named "key" is
// overwritten by the record's key (or read back as the key when the record
// has none).

const (
	// dlqTopicMax is the longest topic: watermill_offsets_<topic> and the
	// index name must fit PostgreSQL's 63-byte identifiers.
	dlqTopicMax = 40
	// dlqReadBatch is the most rows one query of a Read fetches.
	dlqReadBatch = 1000
	// dlqBatchBytes bounds the payloads and metadata a batch brings in (a
	// larger row comes alone).
	dlqBatchBytes = 16 << 20
	// dlqMaxValueBytes is the largest payload read back: a larger row is
	// skipped.
	dlqMaxValueBytes = 64 << 20
	// dlqMaxMetadataBytes is the largest metadata read back: a larger one
	// is not fetched, and its row has no key nor headers.
	dlqMaxMetadataBytes = 4 << 20
	// dlqPublishChunk keeps one INSERT's parameters (3 a row) under
	// PostgreSQL's 65535.
	dlqPublishChunk = 5000
)

func dlqCheckTopic(topic string) error {
	if err := checkTableTopic(topic); err != nil {
		return err
	}
	if len(topic) > dlqTopicMax {
		return fmt.Errorf("topic %q: a postgres topic is part of a table name: use up to %d of a-z A-Z 0-9 _ -", topic, dlqTopicMax)
	}
	return nil
}

// dlqIndex is the (quoted) name of the index on the offset column.
func dlqIndex(topic string) string { return `"watermill_` + topic + `_offset_idx"` }

// pgUndefinedTable tells whether err is PostgreSQL's "relation does not
// exist".
func pgUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

func dlqUnknown(topic string) error {
	return fmt.Errorf("postgres table %s: %w", pgSchema().MessagesTable(topic), topics.ErrUnknownTopic)
}

func (d *postgresDriver) dlqPartitions(ctx context.Context, topic string) (int, error) {
	if err := dlqCheckTopic(topic); err != nil {
		return 0, err
	}
	db, err := d.open()
	if err != nil {
		return 0, err
	}
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgSchema().MessagesTable(topic)).Scan(&exists); err != nil {
		return 0, err
	}
	if !exists {
		return 0, dlqUnknown(topic)
	}
	return 1, nil
}

func (d *postgresDriver) dlqOffsets(ctx context.Context, topic string) (topics.Range, error) {
	if err := dlqCheckTopic(topic); err != nil {
		return topics.Range{}, err
	}
	db, err := d.open()
	if err != nil {
		return topics.Range{}, err
	}
	table := pgSchema().MessagesTable(topic)
	var lo, hi, last stdsql.NullInt64
	err = db.QueryRowContext(ctx, `SELECT min("offset"), max("offset"),
		pg_sequence_last_value(pg_get_serial_sequence($1, 'offset')) FROM `+table, table).Scan(&lo, &hi, &last)
	if pgUndefinedTable(err) {
		return topics.Range{}, dlqUnknown(topic)
	}
	if err != nil {
		return topics.Range{}, err
	}
	if lo.Valid && hi.Valid {
		return topics.Range{Start: lo.Int64, End: hi.Int64 + 1}, nil
	}
	// Empty: the next number, so that End does not go back.
	next := int64(0)
	if last.Valid {
		next = last.Int64 + 1
	}
	return topics.Range{Start: next, End: next}, nil
}

// dlqRow is one row of a Read's batch, as fetched.
type dlqRow struct {
	off      int64
	payload  []byte
	big      bool // the payload was over dlqMaxValueBytes, not fetched
	metadata stdsql.NullString
	at       time.Time
}

func (d *postgresDriver) dlqRead(ctx context.Context, topic string, from, to int64, fn func(topics.Message) bool) error {
	if err := dlqCheckTopic(topic); err != nil {
		return err
	}
	if from >= to {
		return nil
	}
	db, err := d.open()
	if err != nil {
		return err
	}
	// The innermost query takes the batch by offset (the index's range
	// scan); the window then cuts it where its bytes pass dlqBatchBytes,
	// keeping at least the first row. Payloads and metadata over their
	// bounds are not sent. created_at is a timestamp without time zone in
	// the session's zone (CURRENT_TIMESTAMP): read it back in the same.
	q := `SELECT "offset", payload, big, metadata, at FROM (
		SELECT b.*, sum(b.size) OVER (ORDER BY b."offset" ROWS UNBOUNDED PRECEDING) AS run FROM (
			SELECT "offset",
				CASE WHEN octet_length(payload) <= $4 THEN payload END AS payload,
				COALESCE(octet_length(payload) > $4, false) AS big,
				CASE WHEN octet_length(metadata::text) <= $5 THEN metadata::text END AS metadata,
				LEAST(COALESCE(octet_length(payload), 0), $4) + LEAST(COALESCE(octet_length(metadata::text), 0), $5) AS size,
				created_at AT TIME ZONE current_setting('TimeZone') AS at
			FROM ` + pgSchema().MessagesTable(topic) + `
			WHERE "offset" >= $1 AND "offset" < $2
			ORDER BY "offset" LIMIT $3
		) b
	) w WHERE run - size < $6 ORDER BY "offset"`
	rows := make([]dlqRow, 0, 64)
	for from < to {
		if err := ctx.Err(); err != nil {
			return err
		}
		rows, err = d.dlqBatch(ctx, db, q, rows[:0], from, to)
		if pgUndefinedTable(err) {
			return dlqUnknown(topic)
		}
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		for i := range rows {
			r := &rows[i]
			if r.big || i > 0 && r.off == rows[i-1].off {
				continue // hostile or broken: not read (offsets are unique)
			}
			m := topics.Message{Partition: 0, Offset: r.off, Time: r.at, Value: r.payload}
			if r.metadata.Valid {
				m.Key, m.Headers = dlqDecodeMetadata([]byte(r.metadata.String))
			}
			if !fn(m) {
				return nil
			}
		}
		from = rows[len(rows)-1].off + 1
		clear(rows) // the payloads, for the collector
	}
	return nil
}

func (d *postgresDriver) dlqBatch(ctx context.Context, db *stdsql.DB, q string, out []dlqRow, from, to int64) ([]dlqRow, error) {
	rs, err := db.QueryContext(ctx, q, from, to, dlqReadBatch, dlqMaxValueBytes, dlqMaxMetadataBytes, dlqBatchBytes)
	if err != nil {
		return out, err
	}
	defer rs.Close()
	for rs.Next() {
		var r dlqRow
		var at stdsql.NullTime
		if err := rs.Scan(&r.off, &r.payload, &r.big, &r.metadata, &at); err != nil {
			return out, err
		}
		if at.Valid {
			r.at = at.Time
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// dlqDecodeMetadata reads a row's metadata: a JSON object of strings,
// "key" the key, every other entry a header (sorted by name, at most
// maxHeaders, each at most maxHeaderBytes); values that are not strings
// are skipped. Anything but an object becomes the header "metadata".
func dlqDecodeMetadata(raw []byte) (key []byte, headers []kafka.Header) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var md map[string]json.RawMessage
	if err := json.Unmarshal(raw, &md); err != nil || md == nil {
		if len(raw) <= maxHeaderBytes && utf8.Valid(raw) {
			return nil, []kafka.Header{{Key: "metadata", Value: raw}}
		}
		return nil, nil
	}
	names := make([]string, 0, len(md))
	for k, v := range md {
		if len(v) > 0 && v[0] == '"' {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		var s string
		if err := json.Unmarshal(md[k], &s); err != nil {
			continue
		}
		if k == KeyHeader {
			key = []byte(s)
			continue
		}
		if k == "" || len(headers) >= maxHeaders || len(k)+len(s) > maxHeaderBytes {
			continue
		}
		headers = append(headers, kafka.Header{Key: k, Value: []byte(s)})
	}
	return key, headers
}

func (d *postgresDriver) dlqProduce(ctx context.Context, topic string, recs []topics.Record) ([]topics.Produced, error) {
	if err := dlqCheckTopic(topic); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, nil
	}
	db, err := d.open()
	if err != nil {
		return nil, err
	}
	// The largest offset before the insert: the rows inserted next get
	// higher numbers, which bounds the search for them afterwards. The
	// table is made here when missing (provision, then the index).
	table := pgSchema().MessagesTable(topic)
	var lo int64
	var indexed bool
	err = db.QueryRowContext(ctx, `SELECT COALESCE(max("offset"), 0), to_regclass($1) IS NOT NULL FROM `+table, dlqIndex(topic)).Scan(&lo, &indexed)
	if pgUndefinedTable(err) {
		if err := d.dlqCreate(ctx, db, topic); err != nil {
			return nil, err
		}
		lo, indexed = 0, true
	} else if err != nil {
		return nil, err
	}
	if !indexed {
		if err := d.dlqIndex(ctx, db, topic); err != nil {
			return nil, err
		}
	}

	msgs := make([]*message.Message, len(recs))
	ids := make([]string, len(recs))
	for i, r := range recs {
		m := message.NewMessage(watermill.NewUUID(), r.Value)
		for _, h := range r.Headers {
			m.Metadata.Set(h.Key, string(h.Value))
		}
		if r.Key != nil {
			m.Metadata.Set(KeyHeader, string(r.Key))
		}
		m.SetContext(ctx)
		msgs[i], ids[i] = m, m.UUID
	}
	for i := 0; i < len(msgs); i += dlqPublishChunk {
		chunk := msgs[i:min(i+dlqPublishChunk, len(msgs))]
		err := d.publish(ctx, topic, chunk)
		if pgUndefinedTable(err) && i == 0 {
			// Deleted since it was checked (watermill-sql's publisher
			// creates a topic only once): make it again.
			if err := d.dlqCreate(ctx, db, topic); err != nil {
				return nil, err
			}
			lo = 0
			err = d.publish(ctx, topic, chunk)
		}
		if err != nil {
			return nil, fmt.Errorf("writing to postgres table %s: %w", table, err)
		}
	}

	// Where they landed. The records are durable already: an error here
	// is not the write's, so it leaves the offsets unknown (-1) instead of
	// failing the call (and inviting a second copy).
	out := make([]topics.Produced, len(recs))
	at := make(map[string]int, len(ids))
	for i, id := range ids {
		out[i] = topics.Produced{Partition: 0, Offset: -1}
		at[id] = i
	}
	rs, err := db.QueryContext(ctx, `SELECT uuid, "offset" FROM `+table+` WHERE "offset" > $1 AND uuid = ANY($2)`, lo, ids)
	if err != nil {
		d.cfg.Logger.Warn("postgres dead-letter topic: reading back the offsets of the records written failed", "topic", topic, "err", err)
		return out, nil
	}
	defer rs.Close()
	for rs.Next() {
		var id string
		var off int64
		if err := rs.Scan(&id, &off); err != nil {
			break
		}
		if i, ok := at[id]; ok {
			out[i].Offset = off
		}
	}
	return out, nil
}

// dlqCreate makes the topic's tables (provision) and the offset index.
func (d *postgresDriver) dlqCreate(ctx context.Context, db *stdsql.DB, topic string) error {
	if err := d.provision(ctx, db, topic); err != nil {
		return err
	}
	return d.dlqIndex(ctx, db, topic)
}

// dlqIndex adds the index on "offset", under watermill-sql's schema lock
// (two concurrent CREATE ... IF NOT EXISTS can otherwise collide).
func (d *postgresDriver) dlqIndex(ctx context.Context, db *stdsql.DB, topic string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, wmsql.DefaultSchemaInitializationLock("watermill")); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+dlqIndex(topic)+` ON `+pgSchema().MessagesTable(topic)+` ("offset")`); err != nil {
		return fmt.Errorf("indexing %s: %w", pgSchema().MessagesTable(topic), err)
	}
	return tx.Commit()
}

func (d *postgresDriver) dlqDelete(ctx context.Context, topic string) error {
	if err := dlqCheckTopic(topic); err != nil {
		return err
	}
	db, err := d.open()
	if err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, `DROP TABLE IF EXISTS `+pgSchema().MessagesTable(topic)+`, `+pgOffsetsTable(topic))
	return err
}
