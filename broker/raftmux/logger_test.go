package raftmux

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

func TestLoggerLevelsAndFields(t *testing.T) {
	var buf bytes.Buffer
	l := Logger(zerolog.New(&buf).Level(zerolog.DebugLevel)).Named("group")
	l.Error("failed to appendEntries to", "peer", "127.0.0.1:1", "time", 2*time.Second)
	l.Error("failed to take snapshot", "error", "disk full")
	l.Error("failed to flush response", "error", "stream closed") // a peer's stream, as it stops
	l.Warn("heartbeat timeout reached")
	l.Debug("not shown at debug")
	l.Info("servers", "list", hclog.Fmt("%d+%d", 1, 2))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d lines, want 5:\n%s", len(lines), buf.String())
	}
	var got []map[string]any
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, m)
	}
	if got[0]["level"] != "debug" || got[0]["peer"] != "127.0.0.1:1" || got[0]["raft_time"] == nil || got[0]["raft"] != "group" {
		t.Errorf("Raft error about a peer logged as %v; want level debug with its fields, its time renamed, and the logger's name", got[0])
	}
	if got[1]["level"] != "warn" || got[1]["error"] != "disk full" {
		t.Errorf("Raft error logged as %v; want level warn", got[1])
	}
	if got[2]["level"] != "debug" {
		t.Errorf("Raft error about a peer's stream logged as %v; want level debug", got[2])
	}
	if got[3]["level"] != "debug" || got[3]["message"] != "heartbeat timeout reached" {
		t.Errorf("Raft warning logged as %v; want level debug", got[3])
	}
	if got[4]["list"] != "1+2" {
		t.Errorf("formatted field logged as %v; want 1+2", got[4]["list"])
	}

	buf.Reset()
	Logger(zerolog.New(&buf).Level(zerolog.ErrorLevel)).Error("quiet")
	if buf.Len() != 0 {
		t.Errorf("an error-level logger got %q from a Raft error", buf.String())
	}
}
