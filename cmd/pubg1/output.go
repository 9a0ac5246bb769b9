package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// outputFlag is --output of the read commands. Table is for people; JSON
// and YAML carry the same fields under the same snake_case names, which
// are part of the command line's interface and documented in the README.
type outputFlag struct {
	Output string `short:"o" default:"table" enum:"table,json,yaml" help:"Output format (${enum})."`
}

// structured reports whether the command prints data rather than a table.
func (o outputFlag) structured() bool { return o.Output != "table" }

// emit prints v as JSON (indented, one document) or YAML.
func (o outputFlag) emit(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if o.Output == "yaml" {
		if b, err = jsonToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = stdout.Write(b)
	return err
}

// jsonToYAML rewrites a JSON document as block-style YAML, keeping the
// order of fields, so that YAML needs no second set of field names.
func jsonToYAML(b []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("converting to YAML: %w", err)
	}
	var plain func(n *yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		// A JSON string that reads as another YAML type ("123",
		// "true") keeps its quotes; the encoder adds them by tag.
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&doc)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("converting to YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
