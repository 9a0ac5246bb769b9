package kproto

import (
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// BadInput counts the connections a server closed for bad input (a
// malformed request, an unknown API or version, an oversized or negative
// frame): each is logged at debug level, and Summarize logs how many there
// were since the last summary at info level, so that a stream of garbage
// cannot flood the log.
type BadInput struct {
	log zerolog.Logger

	mu      sync.Mutex
	count   int
	remotes map[string]bool
	last    error
	lastAt  string
}

// maxSummaryRemotes bounds the distinct addresses a summary counts.
const maxSummaryRemotes = 1024

// NewBadInput returns a counter that logs to log.
func NewBadInput(log zerolog.Logger) *BadInput {
	return &BadInput{log: log, remotes: make(map[string]bool)}
}

// note records a connection from remote closed because of err.
func (b *BadInput) note(remote string, err error) {
	b.log.Debug().Str("remote", remote).Err(err).Msg("kafka connection closed for bad input")
	b.mu.Lock()
	b.count++
	if len(b.remotes) < maxSummaryRemotes {
		b.remotes[hostOf(remote)] = true
	}
	b.last, b.lastAt = err, remote
	b.mu.Unlock()
}

// Summarize logs, at info level, how many connections were closed for bad
// input since the last call, if any, and starts counting again.
func (b *BadInput) Summarize(since time.Duration) {
	b.mu.Lock()
	count, hosts, last, lastAt := b.count, len(b.remotes), b.last, b.lastAt
	b.count, b.last, b.lastAt = 0, nil, ""
	clear(b.remotes)
	b.mu.Unlock()
	if count == 0 {
		return
	}
	b.log.Info().Int("connections", count).Int("hosts", hosts).Dur("within", since).
		Str("last_remote", lastAt).AnErr("last_error", last).
		Msg("kafka connections closed for bad input (each is logged at debug level)")
}

// hostOf is the host part of a host:port address.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
