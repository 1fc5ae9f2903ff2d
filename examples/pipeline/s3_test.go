package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sluicehq/sluice/handlers"
	"github.com/sluicehq/sluice/internal/testkit"
)

// fakeS3 is an in-process S3-compatible server (gofakes3, in memory) on
// 127.0.0.1; wrap, when set, sits in front of it.
func fakeS3(t *testing.T, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	var h http.Handler = gofakes3.New(s3mem.New()).Server()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func s3Config(srv *httptest.Server, bucket string) *S3Config {
	return &S3Config{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: bucket, Region: "us-east-1",
		AccessKey: "test-access", SecretKey: "test-secret", PathStyle: true, DisableTLS: true, CreateBucket: true}
}

// reader is a client of its own (not the pipeline's) that reads the objects
// back.
func reader(t *testing.T, srv *httptest.Server) *minio.Client {
	t.Helper()
	c, err := minio.New(strings.TrimPrefix(srv.URL, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4("test-access", "test-secret", ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// getObject reads s3://bucket/key.
func getObject(ctx context.Context, c *minio.Client, loc string) ([]byte, error) {
	bucket, key, ok := strings.Cut(strings.TrimPrefix(loc, "s3://"), "/")
	if !ok || !strings.HasPrefix(loc, "s3://") {
		return nil, fmt.Errorf("%q is not s3://bucket/key", loc)
	}
	o, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	return io.ReadAll(o)
}

// The whole chain with the thumbnails in an S3-compatible bucket (created
// at start): every thumbnail is an object of the right size, read back
// through minio-go; the catalog rows and the search results point at the
// objects; the corrupt image and the uploads whose names are not plain
// file names are dead-lettered, and the bucket holds nothing else.
func TestPipelineS3(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := fakeS3(t, nil)
	c := startChain(t, ctx, s3Config(srv, "thumbs-bucket"), nil)
	bad := map[string]string{
		"nested/evil.png":                   "a plain file name is required",
		"..":                                "a plain file name is required",
		"tab\there.png":                     "control characters",
		strings.Repeat("long", 51) + ".png": "at most 200",
	}
	var names []string
	for name := range bad {
		names = append(names, name)
	}
	c.publishAll(t, ctx, names...)
	rd := reader(t, srv)
	c.check(t, ctx, func(name string) string {
		return "s3://thumbs-bucket/thumbs/" + thumbName(name)
	}, func(loc string) ([]byte, error) { return getObject(ctx, rd, loc) }, bad)

	var keys []string
	for o := range rd.ListObjects(ctx, "thumbs-bucket", minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
		if st, err := rd.StatObject(ctx, "thumbs-bucket", o.Key, minio.StatObjectOptions{}); err != nil || st.ContentType != "image/png" {
			t.Fatalf("%s: content type %q (%v)", o.Key, st.ContentType, err)
		}
	}
	if want := []string{"thumbs/harbour.png", "thumbs/icon.png", "thumbs/meadow.png", "thumbs/tower.png"}; strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("objects %q, want %q", keys, want)
	}
	t.Logf("%d thumbnails in s3://thumbs-bucket/thumbs/, %d uploads dead-lettered", len(keys), len(bad)+1)
}

// A failing store is a retryable failure: the first two PUTs of the
// thumbnail get a 503 SlowDown and a 500 from the store, and the third
// attempt (the spec allows 3) stores it; nothing is dead-lettered and the
// catalog and search see it.
func TestPipelineS3Outage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var puts atomic.Int64
	srv := fakeS3(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/outage/thumbs/") {
				switch puts.Add(1) {
				case 1:
					w.Header().Set("Content-Type", "application/xml")
					w.WriteHeader(http.StatusServiceUnavailable)
					_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
					return
				case 2:
					w.Header().Set("Content-Type", "application/xml")
					w.WriteHeader(http.StatusInternalServerError)
					_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>`)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	rec := &recorder{msg: "invocation failed; retrying"}
	c := startChain(t, ctx, s3Config(srv, "outage"), slog.New(rec))
	u := uploads[0]
	if err := Publish(ctx, c.base, Upload{Name: u.name, Caption: u.caption, Image: picture(t, u.w, u.h, u.format)}); err != nil {
		t.Fatal(err)
	}
	var rows []Row
	var err error
	testkit.Eventually(t, 60*time.Second, func() bool {
		rows, err = Search(ctx, c.db, c.schema, u.caption)
		return err == nil && len(rows) == 1
	}, "search for %q finds %s (last: %v, %v)", u.caption, u.name, rows, err)
	if rows[0].Thumb != "s3://outage/thumbs/harbour.png" {
		t.Fatalf("row %+v", rows[0])
	}
	b, err := getObject(ctx, reader(t, srv), rows[0].Thumb)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("the object: %d bytes, %v", len(b), err)
	}
	st := handler(t, c.base, "thumbnail").Status
	if st == nil || st.Failed != 2 || st.Retried != 2 || st.Succeeded != 1 || st.DeadLettered != 0 || puts.Load() != 3 {
		t.Fatalf("thumbnail: %+v; %d PUTs", st, puts.Load())
	}
	errs := rec.errs()
	if len(errs) != 2 || !strings.Contains(errs[0], "storing s3://outage/thumbs/harbour.png") || !strings.Contains(errs[0], "HTTP 503 SlowDown: Please reduce your request rate") ||
		!strings.Contains(errs[1], "HTTP 500 InternalError: We encountered an internal error") {
		t.Fatalf("the retried errors: %q", errs)
	}
	t.Logf("%d PUTs; thumbnail failed %d, retried %d, succeeded %d, dead-lettered %d; errors %q",
		puts.Load(), st.Failed, st.Retried, st.Succeeded, st.DeadLettered, errs)
}

// An unreachable store is a retryable failure naming the object; a missing
// bucket stops the start with a message naming it, unless the store may
// create it; bad settings are refused before any request.
func TestS3Store(t *testing.T) {
	ctx := context.Background()
	srv := fakeS3(t, nil)

	cfg := s3Config(srv, "absent")
	cfg.CreateBucket = false
	_, err := NewS3Store(ctx, *cfg)
	if err == nil || !strings.Contains(err.Error(), `s3 bucket "absent" does not exist`) || !strings.Contains(err.Error(), "-s3-create-bucket") {
		t.Fatalf("missing bucket: %v", err)
	}
	// Start refuses before it touches PostgreSQL or starts a node.
	if _, _, err := Start(ctx, Config{DataDir: t.TempDir(), S3: cfg, PostgresURL: "postgres://nobody@127.0.0.1:1/none"}); err == nil || !strings.Contains(err.Error(), `"absent"`) {
		t.Fatalf("Start with a missing bucket: %v", err)
	}
	cfg.CreateBucket = true
	// No kept-alive connection: once the server is closed, it is
	// unreachable (connection refused), not a broken connection.
	cfg.Transport = &http.Transport{DisableKeepAlives: true}
	s, err := NewS3Store(ctx, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := reader(t, srv).BucketExists(ctx, "absent"); !ok || err != nil {
		t.Fatalf("the bucket was not created: %v %v", ok, err)
	}
	// Created already: the next start finds it.
	if _, err := NewS3Store(ctx, *cfg); err != nil {
		t.Fatal(err)
	}
	loc, err := s.Put(ctx, "x.png", []byte("data"), "image/png")
	if err != nil || loc != "s3://absent/thumbs/x.png" {
		t.Fatalf("put: %q %v", loc, err)
	}

	srv.Close()
	_, err = s.Put(ctx, "y.png", []byte("data"), "image/png")
	if err == nil || handlers.IsPermanent(err) || !strings.Contains(err.Error(), "storing s3://absent/thumbs/y.png") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("an unreachable store: %v (permanent %v)", err, handlers.IsPermanent(err))
	}
	t.Logf("unreachable: %v", err)

	for _, c := range []struct {
		mod  func(*S3Config)
		want string
	}{
		{func(c *S3Config) { c.Endpoint = "" }, "s3 endpoint: required"},
		{func(c *S3Config) { c.Endpoint = "http://127.0.0.1:9000" }, "without a scheme"},
		{func(c *S3Config) { c.Endpoint = "127.0.0.1:9000/path" }, "no path"},
		{func(c *S3Config) { c.Bucket = "" }, `s3 bucket ""`},
		{func(c *S3Config) { c.Bucket = "Bad_Bucket" }, `s3 bucket "Bad_Bucket"`},
		{func(c *S3Config) { c.Prefix = "../up/" }, `s3 prefix "../up/"`},
		{func(c *S3Config) { c.Prefix = "thumbs" }, `s3 prefix "thumbs"`},
		{func(c *S3Config) { c.SecretKey = "" }, "an access key needs a secret key"},
	} {
		cfg := s3Config(srv, "bucket")
		c.mod(cfg)
		if _, err := NewS3Store(ctx, *cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: %v, want %q", cfg, err, c.want)
		}
	}
}

// The run command's flags: without -s3-endpoint the thumbnails go to the
// directory; with it, to the bucket, the secret key from the environment or
// a file and never from a flag.
func TestRunConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err := runConfig(nil, env(nil))
	if err != nil || cfg.S3 != nil || cfg.DataDir != "pipeline-data" {
		t.Fatalf("%+v %v", cfg, err)
	}
	cfg, err = runConfig([]string{"-s3-endpoint", "127.0.0.1:9000", "-s3-bucket", "b", "-s3-access-key", "ak",
		"-s3-path-style", "-s3-tls=false", "-s3-create-bucket", "-s3-region", "eu-west-1"}, env(map[string]string{"PIPELINE_S3_SECRET_KEY": "sk"}))
	if err != nil || cfg.S3 == nil || *cfg.S3 != (S3Config{Endpoint: "127.0.0.1:9000", Bucket: "b", Prefix: "thumbs/", Region: "eu-west-1",
		AccessKey: "ak", SecretKey: "sk", PathStyle: true, DisableTLS: true, CreateBucket: true}) {
		t.Fatalf("%+v %v", cfg.S3, err)
	}
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = runConfig([]string{"-s3-secret-key-file", file}, env(map[string]string{"PIPELINE_S3_ENDPOINT": "s3.amazonaws.com", "PIPELINE_S3_BUCKET": "b"}))
	if err != nil || cfg.S3 == nil || cfg.S3.SecretKey != "from-file" || cfg.S3.DisableTLS {
		t.Fatalf("%+v %v", cfg.S3, err)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-s3-bucket", "b"}, nil, "-s3-bucket without -s3-endpoint"},
		{nil, map[string]string{"PIPELINE_S3_BUCKET": "b"}, "PIPELINE_S3_BUCKET without -s3-endpoint"},
		{[]string{"-s3-endpoint", "e", "-s3-secret-key-file", file}, map[string]string{"PIPELINE_S3_SECRET_KEY": "x"}, "keep one"},
		{[]string{"-s3-endpoint", "e", "-s3-secret-key-file", file + ".missing"}, nil, "-s3-secret-key-file"},
		{[]string{"-s3-secret-key", "x"}, nil, "flag provided but not defined: -s3-secret-key"},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
	} {
		if _, err := runConfig(c.args, env(c.env)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%q %v: %v, want %q", c.args, c.env, err, c.want)
		}
	}
}

// recorder is a slog handler that keeps the err attribute of the records
// with message msg, at any level.
type recorder struct {
	msg   string
	mu    sync.Mutex
	found []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != r.msg {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			r.mu.Lock()
			r.found = append(r.found, a.Value.String())
			r.mu.Unlock()
		}
		return true
	})
	return nil
}

func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) errs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.found)
}
