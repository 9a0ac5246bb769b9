package storage

import (
	"errors"
	"testing"

	"github.com/rs/zerolog"
)

// TestSpaceReserve drives the free-space accounting with a filesystem whose
// free space the test sets: writes are counted against the last
// measurement, refused below the reserve, and let through again once the
// filesystem reports room.
func TestSpaceReserve(t *testing.T) {
	free := int64(1000)
	s := newSpace("dir", 100, zerolog.Nop())
	s.statfs = func(string) (int64, error) { return free, nil }
	if err := s.Reserve(500); err != nil {
		t.Fatalf("500 of 1000 free bytes with a reserve of 100: %v", err)
	}
	// Within the recheck interval the 500 count against the last
	// measurement, which would let 400 more through: 1000-500-400 = 100.
	if err := s.Reserve(400); err != nil {
		t.Fatalf("400 more: %v", err)
	}
	// Near the reserve the filesystem is measured again: it shows the
	// 900 bytes written.
	free = 100
	if err := s.Reserve(1); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("1 byte with 100 free: %v, want ErrDiskFull", err)
	}
	if !s.Low() {
		t.Errorf("Low after a refusal = false")
	}
	// Once refused, writes resume only a quarter of the reserve above it.
	if err := s.Reserve(0); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("nothing with 100 free, after a refusal: %v, want ErrDiskFull", err)
	}
	free = 600 // retention freed some
	if err := s.Reserve(476); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("476 of 600 free, after a refusal: %v, want ErrDiskFull", err)
	}
	if err := s.Reserve(475); err != nil {
		t.Fatalf("475 of 600 free: %v", err)
	}
	if s.Low() {
		t.Errorf("Low after a write let through = true")
	}
	free = 1 << 30 // a larger disk
	if err := s.Reserve(1 << 20); err != nil {
		t.Fatalf("after space was freed: %v", err)
	}
	off := newSpace("dir", -1, zerolog.Nop())
	off.statfs = func(string) (int64, error) { return 0, nil }
	if err := off.Reserve(1 << 30); err != nil {
		t.Fatalf("no reserve: %v", err)
	}
}
