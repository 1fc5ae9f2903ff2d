package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed assets
var embedded embed.FS

// contentTypes are set explicitly rather than taken from the system's MIME
// table, which differs between machines (some map .js to text/plain).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".json": "application/json",
	".txt":  "text/plain; charset=utf-8",
}

// csp allows nothing but this origin: the app loads no third-party code,
// fonts or images, and calls only the node's API.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler returns the dashboard. It serves the embedded files by path and
// answers every other GET that looks like a page (no file extension), such
// as /handlers/orders or /topics, with index.html so that deep links and
// reloads work with the app's client-side routing.
//
// Files are served with Cache-Control: no-cache and a content-hash ETag:
// the file names carry no hash (there is no build step), so browsers must
// revalidate, and get 304 Not Modified until the binary changes.
//
// Paths under /v1/ that reach it are API routes that do not exist: they get
// a JSON 404, not the app. Methods other than GET and HEAD get 405. The
// handler is safe for concurrent use.
func Handler() http.Handler {
	h, err := load()
	if err != nil {
		// Unreachable: the files are compiled in, so a binary that starts
		// has them. Failing loudly beats serving a blank page.
		panic(fmt.Sprintf("dashboard: reading the embedded assets: %v", err))
	}
	return h
}

// load reads and hashes the embedded files once.
var load = sync.OnceValues(func() (*handler, error) {
	sub, err := fs.Sub(embedded, "assets")
	if err != nil {
		return nil, err
	}
	files := map[string]*asset{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := contentTypes[path.Ext(p)]
		if ct == "" {
			ct = http.DetectContentType(b)
		}
		files[p] = &asset{body: b, contentType: ct,
			etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if files["index.html"] == nil {
		return nil, fmt.Errorf("no index.html")
	}
	return &handler{files: files, index: files["index.html"]}, nil
})

type handler struct {
	files map[string]*asset
	index *asset
}

// modTime is fixed: the ETag, not the time, says whether a file changed.
var modTime = time.Unix(0, 0)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if p == "v1" || strings.HasPrefix(p, "v1/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "{\n  \"error\": %q\n}\n", "no API route "+r.Method+" /"+p)
		return
	}
	a := h.files[p]
	switch {
	case p == "":
		a = h.index
	case a == nil && path.Ext(p) == "":
		a = h.index // a client-side route
	case a == nil:
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", a.etag)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	if a == h.index {
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Frame-Options", "DENY")
	}
	// ServeContent answers If-None-Match with 304 and handles HEAD and
	// ranges.
	http.ServeContent(w, r, p, modTime, bytes.NewReader(a.body))
}
