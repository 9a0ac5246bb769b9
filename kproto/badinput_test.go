package kproto

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// jsonLines decodes a JSON log, one object a line.
func jsonLines(log string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestBadInputSummarized: connections closed for bad input are logged at
// debug level only, and one summary at info level counts them.
func TestBadInputSummarized(t *testing.T) {
	// Read once the connections are done: each logs before its Serve
	// returns, which closes waits for.
	var buf bytes.Buffer
	log := zerolog.New(zerolog.SyncWriter(&buf))
	bad := NewBadInput(log)
	cfg := ConnConfig{Logger: log, BadInput: bad}
	const n = 5
	for range n {
		closes(t, cfg, ErrMalformed, framed([]byte{0, 18, 0}))
	}
	for _, l := range jsonLines(buf.String()) {
		if l["level"] != "debug" {
			t.Errorf("bad input logged above debug level: %v", l)
		}
	}
	bad.Summarize(time.Minute)
	bad.Summarize(time.Minute) // nothing new: no line
	var summaries []map[string]any
	for _, l := range jsonLines(buf.String()) {
		if l["level"] == "info" {
			summaries = append(summaries, l)
		}
	}
	if len(summaries) != 1 {
		t.Fatalf("%d summaries, want 1: %v", len(summaries), summaries)
	}
	if s := summaries[0]; s["connections"] != float64(n) || s["hosts"] != float64(1) || !strings.Contains(s["last_error"].(string), "malformed") {
		t.Fatalf("summary %v: want %d connections from 1 host and the last error", s, n)
	}
}
