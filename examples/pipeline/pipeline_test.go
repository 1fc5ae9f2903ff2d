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
	"net/http"
	"os"
	"path/filepath"
	"strconv"
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

// The whole chain against the machine's PostgreSQL: several PNG and JPEG
// uploads each become a thumbnail file (at most 128 pixels a side), a
// catalog row and a search index entry found by the words of its name or
// caption; a corrupt image is dead-lettered with a clear error while the
// rest flow.
func TestPipeline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := pgxpool.New(ctx, postgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("the pipeline test needs PostgreSQL at %s: %v", postgresURL(), err)
	}
	schema := "pipeline_test_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Cleanup(func() { _, _ = db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	dir := t.TempDir()
	p, done, err := Start(ctx, Config{DataDir: dir, PostgresURL: postgresURL(), Schema: schema, HTTPAddr: "127.0.0.1:0", Logger: testkit.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		<-done
	}()
	base := "http://" + p.App.HTTPAddr()

	uploads := []struct {
		name, caption string
		w, h          int
		format        string
		tw, th        int
	}{
		{"harbour.png", "boats in the harbour at dawn", 400, 300, "png", 128, 96},
		{"tower.jpg", "a lighthouse tower on the cliff", 200, 500, "jpeg", 51, 128},
		{"icon.png", "a tiny green icon", 64, 40, "png", 64, 40},
		{"meadow.jpg", "sheep grazing in a meadow", 1000, 1000, "jpeg", 128, 128},
	}
	for _, u := range uploads {
		if err := Publish(ctx, base, Upload{Name: u.name, Caption: u.caption, Image: picture(t, u.w, u.h, u.format)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := Publish(ctx, base, Upload{Name: "broken.jpg", Caption: "a corrupt file", Image: []byte("\xff\xd8 not really a jpeg")}); err != nil {
		t.Fatal(err)
	}

	for _, u := range uploads {
		var rows []Row
		testkit.Eventually(t, 60*time.Second, func() bool {
			rows, err = Search(ctx, db, schema, u.caption)
			return err == nil && len(rows) == 1
		}, "search for %q finds %s (last: %v, %v)", u.caption, u.name, rows, err)
		if rows[0].Name != u.name {
			t.Fatalf("search %q found %v", u.caption, rows)
		}
		f, err := os.Open(filepath.Join(dir, "thumbs", u.name[:len(u.name)-len(filepath.Ext(u.name))]+".png"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width != u.tw || cfg.Height != u.th {
			t.Fatalf("%s: thumbnail %dx%d (%v), want %dx%d", u.name, cfg.Width, cfg.Height, err, u.tw, u.th)
		}
	}
	// By a word of a name, and by words across the collection.
	if rows, err := Search(ctx, db, schema, "lighthouse"); err != nil || len(rows) != 1 || rows[0].Name != "tower.jpg" {
		t.Fatalf("search lighthouse: %v %v", rows, err)
	}
	if rows, err := Search(ctx, db, schema, "harbour"); err != nil || len(rows) != 1 || rows[0].Name != "harbour.png" {
		t.Fatalf("search harbour: %v %v", rows, err)
	}

	// The corrupt upload is dead-lettered with the reason; nothing else is.
	var h api.Handler
	testkit.Eventually(t, 30*time.Second, func() bool {
		h = handler(t, base, "thumbnail")
		return h.Status != nil && h.Status.DeadLettered == 1
	}, "the corrupt image dead-lettered")
	if h.Status.Emitted != uint64(len(uploads)) {
		t.Fatalf("thumbnail emitted %d, want %d", h.Status.Emitted, len(uploads))
	}
	resp, err := http.Get(base + "/v1/handlers/thumbnail/dlq")
	if err != nil {
		t.Fatal(err)
	}
	var page struct{ Entries []struct{ Error, Key string } }
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || len(page.Entries) != 1 || page.Entries[0].Key != "broken.jpg" ||
		!bytes.Contains([]byte(page.Entries[0].Error), []byte("decoding image broken.jpg")) {
		t.Fatalf("dead letters: %+v %v", page, err)
	}
	for _, name := range []string{"catalog", "index"} {
		if st := handler(t, base, name).Status; st == nil || st.Succeeded != uint64(len(uploads)) || st.DeadLettered != 0 {
			t.Fatalf("%s: %+v", name, st)
		}
	}
	var n int
	if err := db.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s.images", schema)).Scan(&n); err != nil || n != len(uploads) {
		t.Fatalf("%d catalog rows (%v), want %d", n, err, len(uploads))
	}
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
