package cli

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/api"
	"github.com/sluicehq/sluice/client"
	"github.com/sluicehq/sluice/handlers"
)

// When publishing stdin line by line, one request carries at most
// publishBatch messages and, unless one message is larger on its own, about
// publishBatchBytes: half the server's default --max-publish-bytes, so
// long lines do not make a batch the server refuses.
const (
	publishBatch      = 500
	publishBatchBytes = 4 << 20
)

func newPublishCmd(env Env, conn *apiConn) *cobra.Command {
	var (
		key       string
		headers   []string
		data      string
		file      string
		partition int
		source    string
	)
	cmd := &cobra.Command{
		Use:   "publish TOPIC",
		Short: "Publish messages to a topic",
		Long: `Publish messages to a topic.

With --data or --file, publish one message whose value is the string or the
file's bytes. With neither, publish each non-empty line of stdin as one
message. --key, --header and --partition apply to every message.

--source writes into a queue instead of a Kafka topic: nats (a JetStream
subject), amqp (a RabbitMQ queue), redis (a stream) or postgres (a
watermill-sql table); the node's --nats-url, --amqp-url, --redis-url or
--postgres-url says where.`,
		Example: `  sluice publish orders --key o-1 --data '{"id":"o-1"}'
  sluice publish images --file cat.png --header content-type=image/png
  jq -c '.[]' orders.json | sluice publish orders
  sluice publish --source redis orders --key o-1 --data '{"id":"o-1"}'`,
		Args: exactArgs("TOPIC"),
	}
	out := addOutputFlag(cmd)
	f := cmd.Flags()
	f.StringVar(&key, "key", "", "message key")
	f.StringArrayVar(&headers, "header", nil, "message header as `key=value`; repeatable")
	f.StringVar(&data, "data", "", "the message `value`")
	f.StringVar(&file, "file", "", "read the message value from the file at `path`")
	f.IntVar(&partition, "partition", 0, "write to partition `n` instead of the one the key picks")
	f.StringVar(&source, "source", "", "the queue to write to: kafka (default), nats, amqp, redis or postgres")

	cmd.RunE = func(c *cobra.Command, args []string) error {
		topic := args[0]
		if err := handlers.ValidateTopic("topic", topic); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		src, err := handlers.ParseSource(source)
		if err != nil {
			return usageErr(c, "--source: %v", err)
		}
		if err := handlers.ValidateSourceTopic(src, "topic", topic); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		if src.IsQueue() && c.Flags().Changed("partition") {
			return usageErr(c, "--partition: a %s queue has no partitions", source)
		}
		if c.Flags().Changed("data") && c.Flags().Changed("file") {
			return usageErr(c, "use --data or --file, not both")
		}
		// The template every message starts from.
		var tmpl api.PublishMessage
		if c.Flags().Changed("key") {
			tmpl.Key = &key
		}
		if c.Flags().Changed("partition") {
			if partition < 0 {
				return usageErr(c, "--partition must not be negative, got %d", partition)
			}
			tmpl.Partition = &partition
		}
		for _, h := range headers {
			k, v, ok := strings.Cut(h, "=")
			if !ok || k == "" {
				return usageErr(c, "--header %q must be key=value", h)
			}
			if tmpl.Headers == nil {
				tmpl.Headers = map[string]string{}
			}
			tmpl.Headers[k] = v
		}

		var (
			single []byte
			one    = true
		)
		switch {
		case c.Flags().Changed("data"):
			single = []byte(data)
		case c.Flags().Changed("file"):
			b, err := os.ReadFile(file)
			if err != nil {
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("reading the message value: %w", err)}
			}
			single = b
		default:
			one = false
		}

		cl, err := conn.client()
		if err != nil {
			return err
		}
		if one {
			res, err := cl.PublishTo(c.Context(), source, topic, []api.PublishMessage{withValue(tmpl, single)})
			if err != nil {
				return fail("publishing to "+topic, err)
			}
			if *out != outputTable {
				return writeData(env.Stdout, *out, res)
			}
			if src.IsQueue() {
				fmt.Fprintf(env.Stdout, "%s %s/%s\n", source, topic, res[0].ID)
			} else {
				fmt.Fprintf(env.Stdout, "%s/%d@%d\n", topic, res[0].Partition, res[0].Offset)
			}
			return nil
		}

		if isTerminal(env.Stdin) {
			fmt.Fprintln(env.Stderr, "reading messages from stdin, one per line; end with Ctrl-D")
		}
		res, err := publishLines(c, cl, source, topic, tmpl, env.Stdin)
		if err != nil {
			return err
		}
		if *out != outputTable {
			return writeData(env.Stdout, *out, res)
		}
		fmt.Fprintf(env.Stdout, "published %d messages to %s\n", len(res), topic)
		return nil
	}
	return cmd
}

// publishLines publishes each non-empty line of r as one message, in
// batches, without holding more than one batch in memory.
func publishLines(c *cobra.Command, cl *client.Client, source, topic string, tmpl api.PublishMessage, r io.Reader) ([]api.Produced, error) {
	results := []api.Produced{}
	if r == nil {
		return results, nil
	}
	batch := make([]api.PublishMessage, 0, publishBatch)
	size := 0 // of batch, roughly as encoded
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := cl.PublishTo(c.Context(), source, topic, batch)
		if err != nil {
			doing := "publishing to " + topic
			if len(results) > 0 {
				doing += fmt.Sprintf(" (the first %d messages were published)", len(results))
			}
			return fail(doing, err)
		}
		results = append(results, res...)
		batch, size = batch[:0], 0
		return nil
	}
	br := bufio.NewReader(r) // not a Scanner: lines may be longer than its 64 KiB
	for {
		line, err := br.ReadBytes('\n')
		if l, ok := bytes.CutSuffix(line, []byte("\n")); ok {
			line = bytes.TrimSuffix(l, []byte("\r"))
		}
		if len(line) > 0 {
			m := withValue(tmpl, line)
			n := encodedSize(m)
			if len(batch) == publishBatch || size+n > publishBatchBytes {
				if ferr := flush(); ferr != nil {
					return nil, ferr
				}
			}
			batch = append(batch, m)
			size += n
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading messages from stdin: %w", err)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return results, nil
}

// encodedSize is about how many bytes m takes in a request: the value is
// already encoded, the rest is small.
func encodedSize(m api.PublishMessage) int {
	n := len(m.Value) + len(m.ValueBase64) + 64
	if m.Key != nil {
		n += len(*m.Key)
	}
	for k, v := range m.Headers {
		n += len(k) + len(v) + 8
	}
	return n
}

// withValue returns tmpl carrying value: as a JSON string when it is UTF-8
// text, else base64, so that any bytes arrive unchanged. The copies share
// tmpl's key and headers, which nothing changes once built.
func withValue(tmpl api.PublishMessage, value []byte) api.PublishMessage {
	m := tmpl
	if utf8.Valid(value) {
		m.Value, _ = json.Marshal(string(value)) // a string always marshals
	} else {
		m.ValueBase64 = base64.StdEncoding.EncodeToString(value)
	}
	return m
}

// isTerminal reports whether r is an interactive terminal, where a user
// who forgot --data would otherwise wait on a silent command.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
