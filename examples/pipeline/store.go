package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Store is where the thumbnails go: a directory (DirStore) or an
// S3-compatible bucket (S3Store).
type Store interface {
	// Put stores data under name (a plain file name, checked by the
	// caller) and returns its location: the file's path, or
	// s3://bucket/key. An error is retryable unless it is
	// sluice.Permanent.
	Put(ctx context.Context, name string, data []byte, contentType string) (location string, err error)
	// String says where the store is, for the logs: no secrets.
	String() string
}

// DirStore keeps the thumbnails as files in Dir.
type DirStore struct{ Dir string }

// Put writes the file Dir/name; the location is its path.
func (d DirStore) Put(_ context.Context, name string, data []byte, _ string) (string, error) {
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(d.Dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

func (d DirStore) String() string { return "directory " + d.Dir }

// S3Config is an S3-compatible store: AWS S3, MinIO, Ceph, R2...
type S3Config struct {
	// Endpoint is host[:port], without a scheme: s3.amazonaws.com,
	// 127.0.0.1:9000.
	Endpoint string
	// Bucket holds the thumbnails, under Prefix.
	Bucket string
	// Prefix starts every key. Default "thumbs/"; "-" means none. It is
	// empty or ends with "/", each of its segments made of A-Z a-z 0-9
	// . _ - and not starting with a dot.
	Prefix string
	// Region is the bucket's region; empty lets the client ask the
	// store (and creates a bucket in us-east-1).
	Region string
	// AccessKey and SecretKey sign the requests; both empty means
	// anonymous requests.
	AccessKey, SecretKey string
	// PathStyle addresses the bucket as endpoint/bucket/key instead of
	// bucket.endpoint/key (MinIO and most self-hosted stores want it;
	// without it the client picks).
	PathStyle bool
	// DisableTLS talks plain HTTP to the endpoint.
	DisableTLS bool
	// CreateBucket creates the bucket at start when it does not exist;
	// without it a missing bucket is an error.
	CreateBucket bool
	// Transport is the HTTP transport; nil means the client's default.
	Transport http.RoundTripper
}

var prefixRE = regexp.MustCompile(`^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*$`)

// S3Store keeps the thumbnails as objects in an S3-compatible bucket.
type S3Store struct {
	client *minio.Client
	cfg    S3Config
}

// NewS3Store checks cfg, connects and checks that the bucket exists
// (creating it when cfg.CreateBucket is set).
func NewS3Store(ctx context.Context, cfg S3Config) (*S3Store, error) {
	switch {
	case cfg.Endpoint == "":
		return nil, errors.New("s3 endpoint: required (host[:port])")
	case strings.Contains(cfg.Endpoint, "://"):
		return nil, fmt.Errorf("s3 endpoint %q: give host[:port] without a scheme (TLS is on unless turned off: -s3-tls=false)", cfg.Endpoint)
	case strings.ContainsAny(cfg.Endpoint, "/?#@ "):
		return nil, fmt.Errorf("s3 endpoint %q: give host[:port], no path", cfg.Endpoint)
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("s3 bucket %q: %w", cfg.Bucket, err)
	}
	switch cfg.Prefix {
	case "":
		cfg.Prefix = "thumbs/"
	case "-":
		cfg.Prefix = ""
	}
	if !prefixRE.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("s3 prefix %q: segments of A-Z a-z 0-9 . _ - (not starting with a dot), each ending with /", cfg.Prefix)
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return nil, errors.New("s3: an access key needs a secret key and a secret key an access key")
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       !cfg.DisableTLS,
		Transport:    cfg.Transport,
		Region:       cfg.Region,
		BucketLookup: lookup,
		// One request per call: Sluice's retries, with their backoff, and
		// its circuit breaker deal with an unreachable or failing store.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %q: %w", cfg.Endpoint, err)
	}
	s := &S3Store{client: client, cfg: cfg}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("checking s3 bucket %q at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if ok {
		return s, nil
	}
	if !cfg.CreateBucket {
		return nil, fmt.Errorf("s3 bucket %q does not exist at %s: create it, or let the pipeline create it (-s3-create-bucket)", cfg.Bucket, cfg.Endpoint)
	}
	if err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
		// Another node may have created it in the meantime.
		if code := minio.ToErrorResponse(err).Code; code != "BucketAlreadyOwnedByYou" {
			return nil, fmt.Errorf("creating s3 bucket %q at %s: %w", cfg.Bucket, cfg.Endpoint, err)
		}
	}
	return s, nil
}

// Put uploads data as the object Prefix+name; the location is
// s3://bucket/key. Every failure is retryable: an unreachable store, a 5xx
// and a 503 SlowDown are passing, and a 4xx (access denied, a bucket
// deleted under the pipeline) needs the operator, not a dead letter per
// upload; the retries and the breaker hold the uploads meanwhile.
func (s *S3Store) Put(ctx context.Context, name string, data []byte, contentType string) (string, error) {
	key := s.cfg.Prefix + name
	loc := "s3://" + s.cfg.Bucket + "/" + key
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: contentType}); err != nil {
		if er := minio.ToErrorResponse(err); er.StatusCode != 0 {
			return "", fmt.Errorf("storing %s at %s: HTTP %d %s: %w", loc, s.cfg.Endpoint, er.StatusCode, er.Code, err)
		}
		return "", fmt.Errorf("storing %s at %s: %w", loc, s.cfg.Endpoint, err)
	}
	return loc, nil
}

func (s *S3Store) String() string {
	scheme := "https"
	if s.cfg.DisableTLS {
		scheme = "http"
	}
	return fmt.Sprintf("s3://%s/%s at %s://%s", s.cfg.Bucket, s.cfg.Prefix, scheme, s.cfg.Endpoint)
}
