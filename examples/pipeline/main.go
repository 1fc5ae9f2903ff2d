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
// thumbnails and the broker's data go under ./pipeline-data.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
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
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		_, done, err := Start(ctx, Config{DataDir: "pipeline-data", PostgresURL: postgresURL()})
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
			fmt.Printf("%s\t%s\n", r.Name, r.Caption)
		}
		if len(rows) == 0 {
			return errors.New("nothing found")
		}
		return nil
	}
	return ErrUsage
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
