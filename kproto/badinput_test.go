package kproto

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
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
	var buf syncBuffer
	log := zerolog.New(&buf)
	bad := NewBadInput(log)
	cfg := ConnConfig{Logger: log, BadInput: bad}
	const n = 5
	for range n {
		closes(t, cfg, ErrMalformed, framed([]byte{0, 18, 0}))
	}
	for _, l := range buf.lines() {
		if l["level"] != "debug" {
			t.Errorf("bad input logged above debug level: %v", l)
		}
	}
	bad.Summarize(time.Minute)
	bad.Summarize(time.Minute) // nothing new: no line
	var summaries []map[string]any
	for _, l := range buf.lines() {
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
