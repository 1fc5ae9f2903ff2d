package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// outputFormat is the -o/--output flag: a table for people, JSON or YAML
// for scripts. As a pflag.Value it rejects other values at parse time, so a
// typo is a usage error before any request.
type outputFormat string

const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
	outputYAML  outputFormat = "yaml"
)

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "format" }

func (o *outputFormat) Set(s string) error {
	switch f := outputFormat(s); f {
	case outputTable, outputJSON, outputYAML:
		*o = f
		return nil
	}
	return errors.New("must be table, json or yaml")
}

// addOutputFlag adds -o/--output to the commands whose output it shapes.
func addOutputFlag(c *cobra.Command) *outputFormat {
	o := outputTable
	c.Flags().VarP(&o, "output", "o", "output format: table, json or yaml")
	return &o
}

// writeData writes v as indented JSON or as YAML. The YAML is the JSON form
// rewritten, so both show the API's field names (camelCase, as in the json
// tags) in the API's field order.
func writeData(w io.Writer, format outputFormat, v any) error {
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the output: %w", err)
	}
	if format == outputYAML {
		y, err := jsonToYAML(j)
		if err != nil {
			return fmt.Errorf("encoding the output as YAML: %w", err)
		}
		_, err = w.Write(y)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", j)
	return err
}

// jsonToYAML converts JSON to block-style YAML. It uses yaml/v3's node tree
// (JSON is YAML) rather than sigs.k8s.io/yaml: that keeps the field order
// and needs no new module. Clearing the JSON styles leaves the encoder to
// quote only the strings that would otherwise read as another type.
func jsonToYAML(j []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(j, &n); err != nil {
		return nil, err
	}
	var clear func(*yaml.Node)
	clear = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			clear(c)
		}
	}
	clear(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// newTable returns a writer that aligns tab-separated columns; Flush it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
}
