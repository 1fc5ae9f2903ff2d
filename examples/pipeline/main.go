// Command pipeline is the upload-to-search chain, on one node with the
// embedded broker:
//
//	uploads → thumbnail (Go: resize, store) → thumbnails
//	        → catalog (HTTP: a row in PostgreSQL) → catalog
//	        → index (Go: the PostgreSQL full-text index)
//
//	go run ./examples/pipeline                       # run it (Ctrl-C stops)
//	go run ./examples/pipeline upload cat.jpg "a grey cat on a sofa"
//	go run ./examples/pipeline search grey cat
//
// PIPELINE_POSTGRES_URL sets the database (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable); the
// thumbnails and the broker's data go under ./pipeline-data. With
// -s3-endpoint and -s3-bucket the thumbnails go to an S3-compatible store
// instead (go run ./examples/pipeline run -h lists the flags); its secret
// key comes from PIPELINE_S3_SECRET_KEY or -s3-secret-key-file, never from
// a flag value.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
)

const apiBase = "http://127.0.0.1:8080"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

func postgresURL() string {
	if u := os.Getenv("PIPELINE_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

func run(ctx context.Context, args []string) error {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		cfg, err := runConfig(args, os.Getenv)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		if err != nil {
			return err
		}
		_, done, err := Start(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Println("pipeline running; dashboard on " + apiBase + "; Ctrl-C stops")
		return <-done
	case "upload":
		if len(args) != 2 {
			return ErrUsage
		}
		img, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		return Publish(ctx, apiBase, Upload{Name: filepath.Base(args[0]), Caption: args[1], Image: img})
	case "search":
		if len(args) == 0 {
			return ErrUsage
		}
		db, err := pgxpool.New(ctx, postgresURL())
		if err != nil {
			return err
		}
		defer db.Close()
		rows, err := Search(ctx, db, "pipeline", strings.Join(args, " "))
		if err != nil {
			return err
		}
		for _, r := range rows {
			fmt.Printf("%s\t%s\t%s\n", r.Name, r.Caption, r.Thumb)
		}
		if len(rows) == 0 {
			return errors.New("nothing found")
		}
		return nil
	}
	return ErrUsage
}

// runConfig reads the run command's flags. The S3 secret key is read from
// the environment variable PIPELINE_S3_SECRET_KEY or the file named by
// -s3-secret-key-file, so that it is in no command line or process list.
func runConfig(args []string, getenv func(string) string) (Config, error) {
	cfg := Config{PostgresURL: postgresURL()}
	var s3 S3Config
	var secretFile string
	var tls bool
	fs := flag.NewFlagSet("pipeline run", flag.ContinueOnError)
	fs.StringVar(&cfg.DataDir, "data", "pipeline-data", "the broker's data and, without -s3-endpoint, the thumbnails (under thumbs/)")
	fs.StringVar(&s3.Endpoint, "s3-endpoint", getenv("PIPELINE_S3_ENDPOINT"), "S3-compatible store, host[:port] (s3.amazonaws.com, 127.0.0.1:9000); set, the thumbnails go there (env PIPELINE_S3_ENDPOINT)")
	fs.StringVar(&s3.Bucket, "s3-bucket", getenv("PIPELINE_S3_BUCKET"), "the bucket for the thumbnails (env PIPELINE_S3_BUCKET)")
	fs.StringVar(&s3.Prefix, "s3-prefix", "thumbs/", `the keys' prefix, ending with "/"; "-" for none`)
	fs.StringVar(&s3.Region, "s3-region", getenv("PIPELINE_S3_REGION"), "the bucket's region; empty asks the store (env PIPELINE_S3_REGION)")
	fs.StringVar(&s3.AccessKey, "s3-access-key", getenv("PIPELINE_S3_ACCESS_KEY"), "the access key id (env PIPELINE_S3_ACCESS_KEY); the secret key comes from env PIPELINE_S3_SECRET_KEY or -s3-secret-key-file")
	fs.StringVar(&secretFile, "s3-secret-key-file", "", "a file holding the secret key (instead of env PIPELINE_S3_SECRET_KEY)")
	fs.BoolVar(&s3.PathStyle, "s3-path-style", false, "path-style addressing (endpoint/bucket/key), as MinIO and most self-hosted stores want; without it the client picks")
	fs.BoolVar(&tls, "s3-tls", true, "HTTPS to the store; -s3-tls=false for plain HTTP")
	fs.BoolVar(&s3.CreateBucket, "s3-create-bucket", false, "create the bucket at start when it does not exist (else a missing bucket stops the start)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("run: unexpected argument %q", fs.Arg(0))
	}
	s3.DisableTLS = !tls
	if s3.Endpoint == "" {
		var set []string
		fs.Visit(func(f *flag.Flag) {
			if strings.HasPrefix(f.Name, "s3-") {
				set = append(set, "-"+f.Name)
			}
		})
		if s3.Bucket != "" && !slices.Contains(set, "-s3-bucket") {
			set = append(set, "PIPELINE_S3_BUCKET")
		}
		if len(set) > 0 {
			return cfg, fmt.Errorf("run: %s without -s3-endpoint (or PIPELINE_S3_ENDPOINT)", strings.Join(set, ", "))
		}
		return cfg, nil
	}
	s3.SecretKey = getenv("PIPELINE_S3_SECRET_KEY")
	if secretFile != "" {
		if s3.SecretKey != "" {
			return cfg, errors.New("run: the S3 secret key is in both PIPELINE_S3_SECRET_KEY and -s3-secret-key-file: keep one")
		}
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return cfg, fmt.Errorf("run: -s3-secret-key-file: %w", err)
		}
		s3.SecretKey = strings.TrimRight(string(b), "\r\n")
		if s3.SecretKey == "" {
			return cfg, fmt.Errorf("run: -s3-secret-key-file %s is empty", secretFile)
		}
	}
	cfg.S3 = &s3
	return cfg, nil
}

// Publish sends an upload to the uploads topic through the node's API,
// keyed by its name.
func Publish(ctx context.Context, base string, u Upload) error {
	v, err := json.Marshal(u)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"messages": []any{map[string]any{"key": u.Name, "value": json.RawMessage(v)}}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/topics/uploads/messages", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("publishing %s: %d %s", u.Name, resp.StatusCode, b)
	}
	return nil
}
