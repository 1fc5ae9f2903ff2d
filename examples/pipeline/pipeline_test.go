package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/internal/testkit"
)

func picture(t *testing.T, w, h int, format string) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		for y := range h {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	var buf bytes.Buffer
	var err error
	if format == "jpeg" {
		err = jpeg.Encode(&buf, img, nil)
	} else {
		err = png.Encode(&buf, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type upload struct {
	name, caption string
	w, h          int
	format        string
	tw, th        int
}

// uploads are the good images every chain test publishes, with the size
// their thumbnails must have.
var uploads = []upload{
	{"harbour.png", "boats in the harbour at dawn", 400, 300, "png", 128, 96},
	{"tower.jpg", "a lighthouse tower on the cliff", 200, 500, "jpeg", 51, 128},
	{"icon.png", "a tiny green icon", 64, 40, "png", 64, 40},
	{"meadow.jpg", "sheep grazing in a meadow", 1000, 1000, "jpeg", 128, 128},
}

// chain is a running pipeline in a throwaway schema of the machine's
// PostgreSQL.
type chain struct {
	p      *Pipeline
	db     *pgxpool.Pool
	schema string
	base   string
	dir    string
}

func startChain(t *testing.T, ctx context.Context, s3 *S3Config, logger *slog.Logger) *chain {
	t.Helper()
	if logger == nil {
		logger = testkit.Logger()
	}
	db, err := pgxpool.New(ctx, postgresURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("the pipeline test needs PostgreSQL at %s: %v", postgresURL(), err)
	}
	schema := "pipeline_test_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() { _, _ = db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	dir := t.TempDir()
	cctx, cancel := context.WithCancel(ctx)
	p, done, err := Start(cctx, Config{DataDir: dir, S3: s3, PostgresURL: postgresURL(), Schema: schema, HTTPAddr: "127.0.0.1:0", Logger: logger})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &chain{p: p, db: db, schema: schema, base: "http://" + p.App.HTTPAddr(), dir: dir}
}

// publishAll publishes the good uploads, a corrupt image and the uploads
// named bad (given a good image).
func (c *chain) publishAll(t *testing.T, ctx context.Context, bad ...string) {
	t.Helper()
	for _, u := range uploads {
		if err := Publish(ctx, c.base, Upload{Name: u.name, Caption: u.caption, Image: picture(t, u.w, u.h, u.format)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := Publish(ctx, c.base, Upload{Name: "broken.jpg", Caption: "a corrupt file", Image: []byte("\xff\xd8 not really a jpeg")}); err != nil {
		t.Fatal(err)
	}
	for _, name := range bad {
		if err := Publish(ctx, c.base, Upload{Name: name, Caption: "a bad name", Image: picture(t, 20, 20, "png")}); err != nil {
			t.Fatal(err)
		}
	}
}

// check waits until search finds every good upload and checks each
// thumbnail (read through thumb, from its catalog location loc(name)), the
// catalog rows, the counts of every stage, and the dead letters: the
// corrupt image, then the bad names, each with the error it must contain.
func (c *chain) check(t *testing.T, ctx context.Context, loc func(name string) string, thumb func(loc string) ([]byte, error), bad map[string]string) {
	t.Helper()
	for _, u := range uploads {
		var rows []Row
		var err error
		testkit.Eventually(t, 60*time.Second, func() bool {
			rows, err = Search(ctx, c.db, c.schema, u.caption)
			return err == nil && len(rows) == 1
		}, "search for %q finds %s (last: %v, %v)", u.caption, u.name, rows, err)
		if rows[0].Name != u.name || rows[0].Thumb != loc(u.name) {
			t.Fatalf("search %q found %+v, want %s at %s", u.caption, rows, u.name, loc(u.name))
		}
		b, err := thumb(rows[0].Thumb)
		if err != nil {
			t.Fatalf("%s: reading the thumbnail at %s: %v", u.name, rows[0].Thumb, err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil || img.Bounds().Dx() != u.tw || img.Bounds().Dy() != u.th {
			var got image.Rectangle
			if img != nil {
				got = img.Bounds()
			}
			t.Fatalf("%s: thumbnail %v (%v), want %dx%d", u.name, got, err, u.tw, u.th)
		}
	}
	// By a word of a name, and by words across the collection.
	if rows, err := Search(ctx, c.db, c.schema, "lighthouse"); err != nil || len(rows) != 1 || rows[0].Name != "tower.jpg" {
		t.Fatalf("search lighthouse: %v %v", rows, err)
	}
	if rows, err := Search(ctx, c.db, c.schema, "harbour"); err != nil || len(rows) != 1 || rows[0].Name != "harbour.png" {
		t.Fatalf("search harbour: %v %v", rows, err)
	}

	// The corrupt upload and the bad names are dead-lettered with the
	// reason; nothing else is.
	dead := map[string]string{"broken.jpg": "decoding image broken.jpg"}
	for k, v := range bad {
		dead[k] = v
	}
	var h api.Handler
	testkit.Eventually(t, 30*time.Second, func() bool {
		h = handler(t, c.base, "thumbnail")
		return h.Status != nil && h.Status.DeadLettered == uint64(len(dead))
	}, "%d uploads dead-lettered", len(dead))
	if h.Status.Emitted != uint64(len(uploads)) || h.Status.Succeeded != uint64(len(uploads)) {
		t.Fatalf("thumbnail emitted %d, succeeded %d, want %d", h.Status.Emitted, h.Status.Succeeded, len(uploads))
	}
	resp, err := http.Get(c.base + "/v1/handlers/thumbnail/dlq")
	if err != nil {
		t.Fatal(err)
	}
	var page struct{ Entries []struct{ Error, Key string } }
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || len(page.Entries) != len(dead) {
		t.Fatalf("dead letters: %+v %v", page, err)
	}
	for _, e := range page.Entries {
		if want, ok := dead[e.Key]; !ok || !strings.Contains(e.Error, want) {
			t.Fatalf("dead letter %q: %q, want one of %q", e.Key, e.Error, dead)
		}
		delete(dead, e.Key)
	}
	for _, name := range []string{"catalog", "index"} {
		if st := handler(t, c.base, name).Status; st == nil || st.Succeeded != uint64(len(uploads)) || st.DeadLettered != 0 {
			t.Fatalf("%s: %+v", name, st)
		}
	}
	rows, err := c.db.Query(ctx, fmt.Sprintf("SELECT name, thumb, width, height FROM %s.images ORDER BY name", c.schema))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var name, thumb string
		var w, h int
		if err := rows.Scan(&name, &thumb, &w, &h); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(uploads, func(u upload) bool { return u.name == name })
		if i < 0 || thumb != loc(name) || w != uploads[i].tw || h != uploads[i].th {
			t.Fatalf("catalog row %s: %s %dx%d", name, thumb, w, h)
		}
		n++
	}
	if rows.Err() != nil || n != len(uploads) {
		t.Fatalf("%d catalog rows (%v), want %d", n, rows.Err(), len(uploads))
	}
}

// The whole chain against the machine's PostgreSQL, with the thumbnails in
// a directory: several PNG and JPEG uploads each become a thumbnail file
// (at most 128 pixels a side), a catalog row and a search index entry
// found by the words of its name or caption; a corrupt image is
// dead-lettered with a clear error while the rest flow.
func TestPipeline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := startChain(t, ctx, nil, nil)
	c.publishAll(t, ctx)
	c.check(t, ctx, func(name string) string {
		return filepath.Join(c.dir, "thumbs", thumbName(name))
	}, os.ReadFile, nil)
}

func handler(t *testing.T, base, name string) api.Handler {
	t.Helper()
	resp, err := http.Get(base + "/v1/handlers/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h api.Handler
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}
