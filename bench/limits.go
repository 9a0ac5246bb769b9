package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Limits are the machine's own ceilings, so that a run also reads as a
// share of what the hardware allows: the data directory's disk written
// sequentially with a synced write per block (what a broker that syncs
// every acknowledged batch can at best do), and TCP over loopback (what
// a local cluster's replication and clients share).
type Limits struct {
	MeasuredAt       time.Time `json:"measured_at"`
	DiskDir          string    `json:"disk_dir"`
	DiskBlockBytes   int       `json:"disk_block_bytes"`
	DiskBytes        int64     `json:"disk_bytes"`
	DiskMBPerSec     float64   `json:"disk_mb_per_sec"`
	DiskSyncsPerSec  float64   `json:"disk_syncs_per_sec"`
	LoopbackBytes    int64     `json:"loopback_bytes"`
	LoopbackMBPerSec float64   `json:"loopback_mb_per_sec"`
}

// LimitsConfig bounds the measurement.
type LimitsConfig struct {
	Dir       string        // a directory on the disk to measure; a temporary file is written there and removed
	Block     int           // bytes per synced write
	DiskBytes int64         // at most this much is written
	Time      time.Duration // each measurement stops after this long
}

// DefaultLimitsConfig writes 1 MiB blocks, up to 512 MiB or 3 s, and sends
// over loopback for 3 s.
func DefaultLimitsConfig(dir string) LimitsConfig {
	return LimitsConfig{Dir: dir, Block: 1 << 20, DiskBytes: 512 << 20, Time: 3 * time.Second}
}

// MeasureLimits measures the synced sequential write rate of cfg.Dir's
// disk and the loopback TCP bandwidth.
func MeasureLimits(ctx context.Context, cfg LimitsConfig) (*Limits, error) {
	l := &Limits{MeasuredAt: time.Now().UTC(), DiskDir: cfg.Dir, DiskBlockBytes: cfg.Block}
	n, d, syncs, err := measureDisk(ctx, cfg)
	if err != nil {
		return nil, err
	}
	l.DiskBytes = n
	l.DiskMBPerSec = float64(n) / 1e6 / d.Seconds()
	l.DiskSyncsPerSec = float64(syncs) / d.Seconds()
	n, d, err = measureLoopback(ctx, cfg.Time)
	if err != nil {
		return nil, err
	}
	l.LoopbackBytes = n
	l.LoopbackMBPerSec = float64(n) / 1e6 / d.Seconds()
	return l, nil
}

// measureDisk writes blocks to a new file, each followed by fdatasync.
func measureDisk(ctx context.Context, cfg LimitsConfig) (n int64, d time.Duration, syncs int, err error) {
	f, err := os.CreateTemp(cfg.Dir, "pubg1-limits-*")
	if err != nil {
		return 0, 0, 0, fmt.Errorf("bench: disk limit: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, cfg.Block)
	for i := range block {
		block[i] = byte(i*7 + i>>8)
	}
	start := time.Now()
	for n < cfg.DiskBytes && time.Since(start) < cfg.Time && ctx.Err() == nil {
		if _, err := f.Write(block); err != nil {
			return 0, 0, 0, fmt.Errorf("bench: disk limit: writing %s: %w", f.Name(), err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0, 0, fmt.Errorf("bench: disk limit: syncing %s: %w", f.Name(), err)
		}
		n += int64(len(block))
		syncs++
	}
	if ctx.Err() != nil {
		return 0, 0, 0, fmt.Errorf("bench: disk limit: %w", ctx.Err())
	}
	return n, time.Since(start), syncs, nil
}

// measureLoopback sends as fast as one TCP connection over 127.0.0.1 goes
// for d.
func measureLoopback(ctx context.Context, d time.Duration) (int64, time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, fmt.Errorf("bench: loopback limit: %w", err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	var received int64
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		received, _ = io.Copy(io.Discard, c)
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, 0, fmt.Errorf("bench: loopback limit: %w", err)
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			wg.Wait()
			return 0, 0, fmt.Errorf("bench: loopback limit: %w", err)
		}
	}
	c.Close()
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return 0, 0, fmt.Errorf("bench: loopback limit: %w", ctx.Err())
	}
	if received == 0 {
		return 0, 0, errors.New("bench: loopback limit: nothing received")
	}
	return received, elapsed, nil
}

// ReadLimits reads limits written by WriteLimits (or `pubg1 bench limits
// --out`).
func ReadLimits(path string) (*Limits, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: reading limits: %w", err)
	}
	var l Limits
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("bench: decoding limits %s: %w", path, err)
	}
	return &l, nil
}

// WriteLimits writes l as JSON to path.
func WriteLimits(path string, l *Limits) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encoding limits: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("bench: writing limits: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: writing limits: %w", err)
	}
	return nil
}
