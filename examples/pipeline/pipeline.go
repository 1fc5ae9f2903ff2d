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
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	// Path is where the thumbnail is: a file path, or s3://bucket/key.
	Path   string `json:"path"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// Row is what the catalog endpoint answers, and so what it emits to the
// catalog topic.
type Row struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Caption string `json:"caption"`
	// Thumb is the thumbnail's location (Thumbnail.Path).
	Thumb string `json:"thumb,omitempty"`
}

// Config is where the pipeline keeps its state.
type Config struct {
	// DataDir holds the embedded broker's data and, under thumbs/, the
	// thumbnails when S3 is nil.
	DataDir string
	// S3, when set, is the S3-compatible store the thumbnails go to
	// instead of DataDir/thumbs.
	S3 *S3Config
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
	App   *sluice.App
	db    *pgxpool.Pool
	cfg   Config
	store Store
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
	var store Store = DirStore{Dir: filepath.Join(cfg.DataDir, "thumbs")}
	if cfg.S3 != nil {
		s3, err := NewS3Store(ctx, *cfg.S3)
		if err != nil {
			return nil, nil, err
		}
		store = s3
	}
	cfg.Logger.Info("thumbnails go to " + store.String())
	db, err := pgxpool.New(ctx, cfg.PostgresURL)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	p := &Pipeline{db: db, cfg: cfg, store: store}
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
// stores it as PNG in the store (DataDir/thumbs or a bucket) and emits a
// Thumbnail. A bad name or an image that cannot be decoded is a permanent
// failure: dead-lettered at once. A store failure is retried.
func (p *Pipeline) thumbnail(ctx context.Context, m *sluice.Message) error {
	var u Upload
	if err := json.Unmarshal(m.Value, &u); err != nil {
		return sluice.Permanent(fmt.Errorf("not an upload: %w", err))
	}
	if err := checkName(u.Name); err != nil {
		return sluice.Permanent(err)
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
	var buf bytes.Buffer
	if err := png.Encode(&buf, dst); err != nil {
		return err
	}
	path, err := p.store.Put(ctx, thumbName(u.Name), buf.Bytes(), "image/png")
	if err != nil {
		return err
	}
	p.cfg.Logger.Info("thumbnail made", "name", u.Name, "format", format, "width", w, "height", h, "at", path)
	out, _ := json.Marshal(Thumbnail{Name: u.Name, Caption: u.Caption, Path: path, Width: w, Height: h})
	return sluice.Emit(ctx, sluice.Output{Value: out, Headers: []sluice.Header{
		{Key: "ce_type", Value: []byte("pipeline.thumbnail")}, {Key: "content-type", Value: []byte("application/json")}}})
}

// catalog is the HTTP handler: it writes the thumbnail's row and answers
// it, which Sluice produces to the catalog topic.
func (p *Pipeline) catalog(w http.ResponseWriter, r *http.Request) {
	var t Thumbnail
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&t); err != nil || t.Name == "" || t.Path == "" {
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
	_ = json.NewEncoder(w).Encode(Row{ID: id, Name: t.Name, Caption: t.Caption, Thumb: t.Path})
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
	rows, err := db.Query(ctx, `SELECT i.id, i.name, i.caption, i.thumb FROM `+schema+`.search s JOIN `+schema+`.images i USING (id)
WHERE s.doc @@ plainto_tsquery('english', $1) ORDER BY ts_rank(s.doc, plainto_tsquery('english', $1)) DESC, i.id`, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.ID, &r.Name, &r.Caption, &r.Thumb); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// MaxName is the longest upload name, in bytes.
const MaxName = 200

// checkName refuses an upload name that is not a plain file name: the
// thumbnail's file name or object key is made from it.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("upload name: required")
	case len(name) > MaxName:
		return fmt.Errorf("upload name %q...: %d bytes, at most %d", name[:32], len(name), MaxName)
	case name[0] == '.' || strings.ContainsAny(name, `/\`):
		return fmt.Errorf("upload name %q: a plain file name is required (no / or \\, not starting with a dot)", name)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
		return fmt.Errorf("upload name %q: control characters and invalid UTF-8 are refused", name)
	}
	return nil
}

// thumbName is the thumbnail's file name or object key (after the store's
// prefix): the upload's name with .png for its extension.
func thumbName(name string) string {
	return strings.TrimSuffix(name, filepath.Ext(name)) + ".png"
}

// ErrUsage is a bad command line.
var ErrUsage = errors.New("usage: pipeline [run | upload FILE CAPTION | search WORDS...]")
