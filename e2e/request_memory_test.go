package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api"
)

// procStatusMiB reads a field of /proc/PID/status in MiB: VmRSS (resident
// now) or VmHWM (the peak resident set since the process started).
func procStatusMiB(t *testing.T, pid int, field string) float64 {
	v, err := readProcStatus(pid, field)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func readProcStatus(pid int, field string) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status (has the node exited?)", field, pid)
}

// repeatReader is a body of left copies of one byte, made as it is read.
type repeatReader struct {
	b    byte
	left int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.left)
	for i := range p[:n] {
		p[i] = r.b
	}
	r.left -= n
	return int(n), nil
}

// TestMemoryIsBoundedPerRequest sends a real node (built without the race
// detector, its broker in another process) the biggest requests its API
// admits, and some it does not, and checks that its peak resident memory
// (VmHWM) stays under 300 MiB (issue 11: "Memory is bounded per
// request"), and that each request over a limit gets 413 (431 for the
// headers) saying which.
func TestMemoryIsBoundedPerRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("sends hundreds of MiB")
	}
	const boundMiB = 300.0
	saved := binary
	binary = plainSluice(t)
	defer func() { binary = saved }()
	broker := serveOpts{dataDir: t.TempDir(), kafkaAddr: freeAddr(t), httpAddr: freeAddr(t)}
	serve(t, broker)
	o := serveOpts{brokers: broker.kafkaAddr, httpAddr: freeAddr(t)}
	node := serve(t, o)
	pid := node.cmd.Process.Pid
	base := "http://" + o.httpAddr
	startMiB := procStatusMiB(t, pid, "VmRSS")

	// Sample the resident set while the requests run.
	var peakSample atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if rss, err := readProcStatus(pid, "VmRSS"); err == nil && int64(rss) > peakSample.Load() {
				peakSample.Store(int64(rss))
			}
		}
	}()
	hc := &http.Client{Timeout: 120 * time.Second}
	send := func(method, path string, body io.Reader, size int64, hdr http.Header) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(b)
	}
	wantErr := func(what string, code int, body string, wantCode int, wantText string) {
		t.Helper()
		var e api.Error
		_ = json.Unmarshal([]byte(body), &e)
		if code != wantCode || !strings.Contains(e.Error+body, wantText) {
			t.Fatalf("%s: got %d %.300s, want %d saying %q", what, code, body, wantCode, wantText)
		}
		t.Logf("%s: %d %s", what, code, strings.TrimSpace(e.Error))
	}

	// 1. The largest publish: 10,000 messages (the most a request may
	// hold), each with a key, two headers and a base64 value, filling the
	// 8 MiB body limit. Five in a row, to the same topic.
	const limit = 8 << 20
	msg := func(i int, value string) string {
		return fmt.Sprintf(`{"key":"key-%05d","headers":{"trace":"t-%05d","kind":"big"},"valueBase64":%q}`, i, i, value)
	}
	overhead := len(`{"messages":[]}`) + api.MaxPublishMessages*(len(msg(0, ""))+1)
	raw := make([]byte, (limit-overhead-64)/api.MaxPublishMessages/4*3) // base64: 4 characters for 3 bytes
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	value := base64.StdEncoding.EncodeToString(raw)
	var big bytes.Buffer
	big.WriteString(`{"messages":[`)
	for i := range api.MaxPublishMessages {
		if i > 0 {
			big.WriteByte(',')
		}
		big.WriteString(msg(i, value))
	}
	big.WriteString(`]}`)
	if big.Len() > limit || big.Len() < limit-64<<10 {
		t.Fatalf("the largest publish is %d bytes, want just under %d", big.Len(), limit)
	}
	for round := range 5 {
		code, body := send("POST", "/v1/topics/big/messages", bytes.NewReader(big.Bytes()), int64(big.Len()), nil)
		var pr api.PublishResponse
		if code != 200 || json.Unmarshal([]byte(body), &pr) != nil || len(pr.Results) != api.MaxPublishMessages {
			t.Fatalf("largest publish, round %d: got %d %.300s", round, code, body)
		}
	}
	t.Logf("largest publish: %d messages, %d bytes, 5 times; RSS %.0f MiB", api.MaxPublishMessages, big.Len(), procStatusMiB(t, pid, "VmRSS"))

	// 2. One message more than a request may hold: 413, nothing decoded
	// past the cap.
	over := []byte(`{"messages":[`)
	for i := range api.MaxPublishMessages + 1 {
		if i > 0 {
			over = append(over, ',')
		}
		over = append(over, `{}`...)
	}
	over = append(over, `]}`...)
	code, body := send("POST", "/v1/topics/big/messages", bytes.NewReader(over), int64(len(over)), nil)
	wantErr("10,001 messages", code, body, 413, fmt.Sprintf("at most %d messages", api.MaxPublishMessages))

	// 3. A 256 MiB body: 413 at the limit, not read to the end.
	code, body = send("POST", "/v1/topics/big/messages", &repeatReader{b: ' ', left: 256 << 20}, 256<<20, nil)
	wantErr("256 MiB publish body", code, body, 413, "request body is over the limit of 8388608 bytes")
	// The same without a declared length (chunked).
	code, body = send("POST", "/v1/topics/big/messages", io.NopCloser(&repeatReader{b: ' ', left: 256 << 20}), -1, nil)
	wantErr("256 MiB chunked publish body", code, body, 413, "request body is over the limit of 8388608 bytes")

	// 3b. One message whose headers fill the body: 90,000 of them.
	var hb strings.Builder
	hb.WriteString(`{"messages":[{"value":"v","headers":{`)
	for i := 0; hb.Len() < limit-200; i++ {
		if i > 0 {
			hb.WriteByte(',')
		}
		fmt.Fprintf(&hb, `"h%06d":"%s"`, i, strings.Repeat("x", 80))
	}
	hb.WriteString(`}}]}`)
	code, body = send("POST", "/v1/topics/big/messages", strings.NewReader(hb.String()), int64(hb.Len()), nil)
	wantErr(fmt.Sprintf("one message with %d bytes of headers", hb.Len()), code, body, 413, "a message is larger than the broker accepts")

	// 4. A value nested 8 MiB deep.
	deep := append(append([]byte(`{"messages":[{"value":`), bytes.Repeat([]byte("["), limit-64)...), []byte("]}")...)
	code, body = send("POST", "/v1/topics/big/messages", bytes.NewReader(deep), int64(len(deep)), nil)
	if code != 400 {
		t.Fatalf("a value nested 8 MiB deep: got %d %.300s, want 400", code, body)
	}
	t.Logf("value nested %d deep: %d %.120s", limit-64, code, body)

	// 5. The largest spec (1 MiB): a handler with 1 MiB of headers, and a
	// YAML document of aliases that would expand to gigabytes.
	var hs strings.Builder
	for i := 0; hs.Len() < 1<<20-4096; i++ {
		if i > 0 {
			hs.WriteByte(',')
		}
		fmt.Fprintf(&hs, `"X-H%05d":%q`, i, strings.Repeat("v", 100))
	}
	spec := `{"name":"huge","topic":"huge","http":{"url":"http://127.0.0.1:1/","headers":{` + hs.String() + `}}}`
	code, body = send("PUT", "/v1/handlers/huge", strings.NewReader(spec), int64(len(spec)), nil)
	t.Logf("1 MiB spec (%d bytes): %d %.200s", len(spec), code, body)
	if code != 201 {
		t.Fatalf("1 MiB spec: %d %.300s, want 201", code, body)
	}
	var bomb strings.Builder
	bomb.WriteString("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	for i, prev := 0, "a"; i < 20; i++ {
		name := fmt.Sprintf("l%d", i)
		fmt.Fprintf(&bomb, "%s: &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", name, name, prev, prev, prev, prev, prev, prev, prev, prev, prev)
		prev = name
	}
	req, _ := http.NewRequest("PUT", base+"/v1/handlers/bomb", strings.NewReader(bomb.String()))
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("YAML alias bomb: got %d %.300s, want 400", resp.StatusCode, b)
	}
	t.Logf("YAML alias bomb: %d %.160s", resp.StatusCode, b)

	// 6. A spec over 1 MiB: 413.
	code, body = send("PUT", "/v1/handlers/huge", &repeatReader{b: ' ', left: 64 << 20}, 64<<20, nil)
	wantErr("64 MiB spec", code, body, 413, "request body is over the limit of 1048576 bytes")

	// 7. Headers: 900 KiB of them (under Go's 1 MiB default) are served;
	// 2 MiB are refused with 431.
	many := http.Header{}
	for i := 0; i < 9000; i++ {
		many.Set(fmt.Sprintf("X-Many-%04d", i), strings.Repeat("h", 80))
	}
	if code, body = send("GET", "/v1/handlers", nil, 0, many); code != 200 {
		t.Fatalf("9,000 headers (900 KiB): got %d %.300s", code, body)
	}
	for i := 9000; i < 20000; i++ {
		many.Set(fmt.Sprintf("X-Many-%05d", i), strings.Repeat("h", 80))
	}
	code, body = send("GET", "/v1/handlers", nil, 0, many)
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("20,000 headers (2 MiB): got %d %.300s, want 431", code, body)
	}
	t.Logf("20,000 headers: %d %s", code, strings.TrimSpace(body))

	hwm := procStatusMiB(t, pid, "VmHWM")
	fmt.Printf("memory per request: RSS at start %.0f MiB, highest sample %d MiB, peak resident (VmHWM) %.0f MiB, bound %.0f MiB\n",
		startMiB, peakSample.Load(), hwm, boundMiB)
	if hwm > boundMiB {
		t.Fatalf("the node's resident memory peaked at %.0f MiB, over %.0f MiB", hwm, boundMiB)
	}
	if resp, err := http.Get(base + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the node is not ready after the requests: %v", err)
	}
}
