package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // decodes JPEG uploads
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/image/draw"

	"github.com/sluicehq/sluice"
)

// Upload is a message on the uploads topic.
type Upload struct {
	Name    string `json:"name"`
	Caption string `json:"caption"`
	Image   []byte `json:"image"` // PNG or JPEG; base64 in JSON
}

// Thumbnail is what the thumbnail handler emits to the thumbnails topic.
type Thumbnail struct {
	Name    string `json:"name"`
	Caption string `json:"caption"`
	Path    string `json:"path"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
}

// Row is what the catalog endpoint answers, and so what it emits to the
// catalog topic.
type Row struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Caption string `json:"caption"`
}

// Config is where the pipeline keeps its state.
type Config struct {
	// DataDir holds the embedded broker's data and, under thumbs/, the
	// thumbnails (the object store).
	DataDir string
	// PostgresURL is the catalog and search index database.
	PostgresURL string
	// Schema holds the pipeline's tables. Default "pipeline".
	Schema string
	// HTTPAddr is the Sluice API and dashboard. Default 127.0.0.1:8080.
	HTTPAddr string
	Logger   *slog.Logger
}

// MaxThumb is the longest side of a thumbnail, in pixels.
const MaxThumb = 128

var schemaRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

// Pipeline is the running chain: uploads → thumbnail (Go) → thumbnails →
// catalog (HTTP) → catalog → index (Go).
type Pipeline struct {
	App *sluice.App
	db  *pgxpool.Pool
	cfg Config
}

// Start starts a node with the embedded broker, the three handlers and the
// catalog endpoint; it runs until ctx is done (Wait).
func Start(ctx context.Context, cfg Config) (*Pipeline, <-chan error, error) {
	if cfg.Schema == "" {
		cfg.Schema = "pipeline"
	}
	if !schemaRE.MatchString(cfg.Schema) {
		return nil, nil, fmt.Errorf("schema %q: use a-z, 0-9 and _", cfg.Schema)
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	db, err := pgxpool.New(ctx, cfg.PostgresURL)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	p := &Pipeline{db: db, cfg: cfg}
	if err := p.migrate(ctx); err != nil {
		db.Close()
		return nil, nil, err
	}
	app, err := sluice.New(sluice.WithDataDir(filepath.Join(cfg.DataDir, "broker")), sluice.WithKafkaAddr("127.0.0.1:0"),
		sluice.WithHTTPAddr(cfg.HTTPAddr), sluice.WithLogger(cfg.Logger))
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	p.App = app
	if err := app.Handle(sluice.Spec{Name: "thumbnail", Topic: "uploads", OnSuccess: &sluice.OutputSpec{Topic: "thumbnails"},
		Retry: &sluice.RetrySpec{MaxAttempts: 3}}, p.thumbnail); err != nil {
		return nil, nil, err
	}
	if err := app.Handle(sluice.Spec{Name: "index", Topic: "catalog"}, p.index); err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(p.catalog), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()

	done := make(chan error, 1)
	go func() {
		err := app.Run(ctx)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		db.Close()
		done <- err
	}()
	select {
	case <-app.Started():
	case err := <-done:
		return nil, nil, err
	}
	// The catalog is an HTTP handler: applied through the API like any.
	spec := fmt.Sprintf(`{"name":"catalog","topic":"thumbnails","http":{"url":"http://%s/"},"onSuccess":{"topic":"catalog"}}`, ln.Addr())
	if err := p.apply(ctx, spec); err != nil {
		return nil, nil, err
	}
	return p, done, nil
}

func (p *Pipeline) apply(ctx context.Context, spec string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+p.App.HTTPAddr()+"/v1/handlers/catalog", strings.NewReader(spec))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return nil
			}
			if resp.StatusCode != http.StatusServiceUnavailable { // 503: the node is still loading
				return fmt.Errorf("applying the catalog handler: %d %s", resp.StatusCode, b)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *Pipeline) migrate(ctx context.Context) error {
	s := p.cfg.Schema
	_, err := p.db.Exec(ctx, `
CREATE SCHEMA IF NOT EXISTS `+s+`;
CREATE TABLE IF NOT EXISTS `+s+`.images (
	id bigserial PRIMARY KEY,
	name text NOT NULL UNIQUE,
	caption text NOT NULL,
	thumb text NOT NULL,
	width int NOT NULL,
	height int NOT NULL
);
CREATE TABLE IF NOT EXISTS `+s+`.search (
	id bigint PRIMARY KEY REFERENCES `+s+`.images(id),
	doc tsvector NOT NULL
);
CREATE INDEX IF NOT EXISTS search_doc ON `+s+`.search USING gin (doc);`)
	if err != nil {
		return fmt.Errorf("creating the tables in schema %s: %w", s, err)
	}
	return nil
}

// thumbnail resizes the upload's image to at most MaxThumb pixels a side,
// stores it as PNG under DataDir/thumbs and emits a Thumbnail. An image
// that cannot be decoded is a permanent failure: dead-lettered at once.
func (p *Pipeline) thumbnail(ctx context.Context, m *sluice.Message) error {
	var u Upload
	if err := json.Unmarshal(m.Value, &u); err != nil {
		return sluice.Permanent(fmt.Errorf("not an upload: %w", err))
	}
	if u.Name == "" || strings.ContainsAny(u.Name, `/\`) || u.Name[0] == '.' {
		return sluice.Permanent(fmt.Errorf("upload name %q: a plain file name is required", u.Name))
	}
	src, format, err := image.Decode(bytes.NewReader(u.Image))
	if err != nil {
		return sluice.Permanent(fmt.Errorf("decoding image %s: %w", u.Name, err))
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if w > MaxThumb || h > MaxThumb {
		if w >= h {
			w, h = MaxThumb, max(1, h*MaxThumb/w)
		} else {
			w, h = max(1, w*MaxThumb/h), MaxThumb
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, b, draw.Over, nil)
	dir := filepath.Join(p.cfg.DataDir, "thumbs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, strings.TrimSuffix(u.Name, filepath.Ext(u.Name))+".png")
	var buf bytes.Buffer
	if err := png.Encode(&buf, dst); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return err
	}
	p.cfg.Logger.Info("thumbnail made", "name", u.Name, "format", format, "width", w, "height", h)
	out, _ := json.Marshal(Thumbnail{Name: u.Name, Caption: u.Caption, Path: path, Width: w, Height: h})
	return sluice.Emit(ctx, sluice.Output{Value: out, Headers: []sluice.Header{
		{Key: "ce_type", Value: []byte("pipeline.thumbnail")}, {Key: "content-type", Value: []byte("application/json")}}})
}

// catalog is the HTTP handler: it writes the thumbnail's row and answers
// it, which Sluice produces to the catalog topic.
func (p *Pipeline) catalog(w http.ResponseWriter, r *http.Request) {
	var t Thumbnail
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&t); err != nil || t.Name == "" {
		http.Error(w, "not a thumbnail", http.StatusBadRequest) // permanent
		return
	}
	var id int64
	err := p.db.QueryRow(r.Context(), `INSERT INTO `+p.cfg.Schema+`.images (name, caption, thumb, width, height) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE SET caption = $2, thumb = $3, width = $4, height = $5 RETURNING id`,
		t.Name, t.Caption, t.Path, t.Width, t.Height).Scan(&id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable) // retried
		return
	}
	w.Header().Set("Ce-Type", "pipeline.catalog")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Row{ID: id, Name: t.Name, Caption: t.Caption})
}

// index updates the full-text index with the row's name and caption.
func (p *Pipeline) index(ctx context.Context, m *sluice.Message) error {
	var row Row
	if err := json.Unmarshal(m.Value, &row); err != nil || row.ID == 0 {
		return sluice.Permanent(fmt.Errorf("not a catalog row: %s", m.Value))
	}
	words := strings.NewReplacer(".", " ", "-", " ", "_", " ").Replace(row.Name) + " " + row.Caption
	_, err := p.db.Exec(ctx, `INSERT INTO `+p.cfg.Schema+`.search (id, doc) VALUES ($1, to_tsvector('english', $2))
ON CONFLICT (id) DO UPDATE SET doc = excluded.doc`, row.ID, words)
	return err
}

// Search finds images by words in their name or caption.
func Search(ctx context.Context, db *pgxpool.Pool, schema, query string) ([]Row, error) {
	if !schemaRE.MatchString(schema) {
		return nil, fmt.Errorf("schema %q: use a-z, 0-9 and _", schema)
	}
	rows, err := db.Query(ctx, `SELECT i.id, i.name, i.caption FROM `+schema+`.search s JOIN `+schema+`.images i USING (id)
WHERE s.doc @@ plainto_tsquery('english', $1) ORDER BY ts_rank(s.doc, plainto_tsquery('english', $1)) DESC, i.id`, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.ID, &r.Name, &r.Caption); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ErrUsage is a bad command line.
var ErrUsage = errors.New("usage: pipeline [run | upload FILE CAPTION | search WORDS...]")
