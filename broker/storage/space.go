package storage

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// ErrDiskFull is returned by Reserve when a write would take the store's
// filesystem below its free-space reserve. Nothing was written.
var ErrDiskFull = errors.New("storage: free space on the data directory's filesystem is below its reserve")

// spaceRecheck is how long a measurement of free space is trusted; the
// bytes reserved since it are counted against it.
const spaceRecheck = 100 * time.Millisecond

// resumeMargin is the share of the reserve that must be free above it,
// once writes were refused, before they resume (at most maxResumeMargin):
// a small write must not slip in between large ones refused, and writes
// must not flap around the reserve.
const (
	resumeMargin    = 4 // a quarter
	maxResumeMargin = 64 << 20
)

// space keeps a filesystem's free space above a reserve: writes that grow
// the data ask Reserve first, which refuses them while the free space,
// less what was reserved since it was last measured, would fall below the
// reserve. Writes that do not grow the data (Raft terms and votes, the
// cluster metadata, deletions) are not counted: the reserve is there so
// that they, and Badger's own flushes, always find room.
type space struct {
	dir     string
	reserve int64
	log     zerolog.Logger
	statfs  func(dir string) (int64, error)

	mu       sync.Mutex
	measured time.Time
	free     int64 // at measured
	since    atomic.Int64
	low      bool
}

func newSpace(dir string, reserve int64, log zerolog.Logger) *space {
	return &space{dir: dir, reserve: reserve, log: log, statfs: freeBytes}
}

// freeBytes is the space an unprivileged writer may still use on the
// filesystem holding dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("storage: free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Reserve counts n bytes about to be written, or refuses them with
// ErrDiskFull. Once it has refused a write, it refuses every write until
// the free space is a margin above the reserve.
func (s *space) Reserve(n int) error {
	if s == nil || s.reserve <= 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	floor := s.reserve
	if s.low {
		floor += min(s.reserve/resumeMargin, maxResumeMargin)
	}
	now := time.Now()
	if now.Sub(s.measured) >= spaceRecheck || s.free-s.since.Load()-int64(n) < floor {
		s.measure(now)
	}
	if s.free-s.since.Load()-int64(n) < floor {
		s.setLow(true)
		return fmt.Errorf("%w (%d bytes free, reserve %d)", ErrDiskFull, s.free-s.since.Load(), s.reserve)
	}
	s.since.Add(int64(n))
	s.setLow(false)
	return nil
}

// measure reads the free space again; s.mu is held. A failed measurement
// keeps the last one (and its count), so that writes are not refused on a
// guess.
func (s *space) measure(now time.Time) {
	free, err := s.statfs(s.dir)
	if err != nil {
		s.log.Warn().Err(err).Msg("cannot measure the data directory's free space")
		return
	}
	s.free, s.measured = free, now
	s.since.Store(0)
}

// setLow logs the changes of the condition; s.mu is held.
func (s *space) setLow(low bool) {
	if low == s.low {
		return
	}
	s.low = low
	if low {
		s.log.Warn().Int64("free_bytes", s.free).Int64("reserve_bytes", s.reserve).Str("data", s.dir).
			Msg("free space on the data directory's filesystem is below the reserve: produce and commits are refused until space is freed; reads go on")
		return
	}
	s.log.Info().Int64("free_bytes", s.free).Int64("reserve_bytes", s.reserve).Msg("free space is above the reserve again: writes resume")
}

// Low reports whether the last write asked for was refused.
func (s *space) Low() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.low
}
