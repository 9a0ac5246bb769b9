//go:build linux

package storage

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Badger maps its value-log files into memory and reads values from the
// mappings; a record written stays in the broker's resident memory as
// long as its file is mapped, so a broker's RSS grows with the data it
// has written, up to the size of the value log. The kernel would reclaim
// those pages under memory pressure, but until then they count against
// the broker, and against a container's memory limit. So the broker asks
// the kernel to reclaim them (MADV_PAGEOUT) once they are cold: every
// value-log file but the newest, and of the newest everything but its
// last pageOutKeep bytes written, which tailing consumers read. A read of
// a reclaimed value faults it back in from disk.

// pageOutKeep is how much of the newest value-log file stays resident.
const pageOutKeep = 32 << 20

// vlogMapping is one mapping of a value-log file into this process.
type vlogMapping struct {
	start, end uintptr
	fid        int
}

// valueLogMappings lists the mappings of the value-log files in dir
// (resolved, absolute) that /proc/self/maps shows.
func valueLogMappings(dir string) ([]vlogMapping, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("storage: reading memory mappings: %w", err)
	}
	defer f.Close()
	var out []vlogMapping
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		m, ok := parseVlogMapping(sc.Bytes(), dir)
		if ok {
			out = append(out, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("storage: reading memory mappings: %w", err)
	}
	return out, nil
}

// parseVlogMapping parses one line of /proc/self/maps ("start-end perms
// offset dev inode path") and reports whether it maps a value-log file of
// dir that still exists.
func parseVlogMapping(line []byte, dir string) (vlogMapping, bool) {
	fields := strings.Fields(string(line))
	if len(fields) < 6 {
		return vlogMapping{}, false
	}
	path := strings.Join(fields[5:], " ")
	if filepath.Dir(path) != dir || !strings.HasSuffix(path, ".vlog") {
		return vlogMapping{}, false // also skips "... (deleted)"
	}
	fid, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(path), ".vlog"))
	if err != nil {
		return vlogMapping{}, false
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return vlogMapping{}, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return vlogMapping{}, false
	}
	return vlogMapping{start: uintptr(start), end: uintptr(end), fid: fid}, true
}

// pageOutValueLog asks the kernel to reclaim the cold pages of dir's
// value-log mappings (see above) and returns how many bytes of address
// space it advised. A mapping that went away meanwhile is skipped; a
// kernel without MADV_PAGEOUT (before 5.4) gives errPageOutUnsupported.
func pageOutValueLog(dir string) (int64, error) {
	maps, err := valueLogMappings(dir)
	if err != nil || len(maps) == 0 {
		return 0, err
	}
	newest := maps[0].fid
	for _, m := range maps {
		newest = max(newest, m.fid)
	}
	var advised int64
	for _, m := range maps {
		end := m.end
		if m.fid == newest {
			end = residentEnd(m)
			if end < m.start+pageOutKeep {
				continue
			}
			end -= pageOutKeep
		}
		if end <= m.start {
			continue
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, end-m.start, unix.MADV_PAGEOUT)
		switch {
		case errno == unix.EINVAL:
			return advised, errPageOutUnsupported
		case errno == unix.ENOMEM:
			continue // unmapped since the maps were read
		case errno != 0:
			return advised, fmt.Errorf("storage: madvise(MADV_PAGEOUT) on a value-log file: %w", errno)
		}
		advised += int64(end - m.start)
	}
	return advised, nil
}

var errPageOutUnsupported = errors.New("storage: the kernel does not support MADV_PAGEOUT")

// residentEnd returns the end of the last resident page of m (m.start if
// none): Badger appends to the newest file from its start, so that is
// where its writes have reached, give or take pages read back.
func residentEnd(m vlogMapping) uintptr {
	vec := mincore(m)
	for i := len(vec) - 1; i >= 0; i-- {
		if vec[i]&1 != 0 {
			return m.start + uintptr(i+1)*uintptr(os.Getpagesize())
		}
	}
	return m.start
}

// mincore returns a byte per page of m whose lowest bit is set when the
// page is resident (nil if m cannot be asked about).
func mincore(m vlogMapping) []byte {
	page := uintptr(os.Getpagesize())
	vec := make([]byte, (m.end-m.start+page-1)/page)
	if len(vec) == 0 {
		return nil
	}
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, m.start, m.end-m.start, uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return nil
	}
	return vec
}
