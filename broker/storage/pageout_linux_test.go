//go:build linux

package storage

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

// residentVlog sums the resident bytes of dir's value-log mappings other
// than the newest file's, and of the newest.
func residentVlog(t *testing.T, dir string) (old, newest int) {
	t.Helper()
	maps, err := valueLogMappings(dir)
	if err != nil {
		t.Fatal(err)
	}
	top := -1
	for _, m := range maps {
		top = max(top, m.fid)
	}
	for _, m := range maps {
		n := 0
		for _, v := range mincore(m) {
			n += int(v & 1)
		}
		if m.fid == top {
			newest += n * 4096
		} else {
			old += n * 4096
		}
	}
	return old, newest
}

// TestPageOutValueLog writes 48 MiB of values through a store with 4 MiB
// value-log files: after pageOutValueLog, no more than a quarter of the
// older files' pages stay resident, and every value reads back intact.
func TestPageOutValueLog(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBadger(BadgerOptions{Dir: dir, Logger: zerolog.Nop(), ValueLogFileSize: 4 << 20, GCInterval: -1, PageOutInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	value := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 64<<10) }
	const n = 768 // 48 MiB
	for i := 0; i < n; i += 16 {
		var kvs []KV
		for j := i; j < i+16; j++ {
			kvs = append(kvs, KV{Key: fmt.Appendf(nil, "k%04d", j), Value: value(j)})
		}
		if err := WriteKVs(b, kvs...); err != nil {
			t.Fatal(err)
		}
	}
	rdir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	oldBefore, newBefore := residentVlog(t, rdir)
	if oldBefore < 16<<20 {
		t.Fatalf("only %d bytes of the older value-log files resident after writing 48 MiB", oldBefore)
	}
	advised, err := pageOutValueLog(rdir)
	if err != nil {
		t.Fatal(err)
	}
	oldAfter, newAfter := residentVlog(t, rdir)
	t.Logf("advised %d bytes; resident older files %d -> %d, newest file %d -> %d", advised, oldBefore, oldAfter, newBefore, newAfter)
	if advised == 0 || oldAfter > oldBefore/4 {
		t.Fatalf("advised %d bytes, older files' resident bytes %d -> %d", advised, oldBefore, oldAfter)
	}
	for i := range n {
		got, err := b.Get(fmt.Appendf(nil, "k%04d", i))
		if err != nil || !bytes.Equal(got, value(i)) {
			t.Fatalf("value %d after the page-out: %d bytes, err %v", i, len(got), err)
		}
	}
}

func TestParseVlogMapping(t *testing.T) {
	for _, c := range []struct {
		line string
		ok   bool
		m    vlogMapping
	}{
		{"7f0000000000-7f0010000000 r--s 00000000 103:02 1234 /data/d/000007.vlog", true, vlogMapping{0x7f0000000000, 0x7f0010000000, 7}},
		{"7f0000000000-7f0010000000 r--s 00000000 103:02 1234 /data/d with space/000002.vlog", false, vlogMapping{}},
		{"7f0000000000-7f0010000000 r--s 00000000 103:02 1234 /data/d/000007.vlog (deleted)", false, vlogMapping{}},
		{"7f0000000000-7f0010000000 r--s 00000000 103:02 1234 /data/d/000007.sst", false, vlogMapping{}},
		{"7f0000000000-7f0010000000 r--s 00000000 103:02 1234 /data/other/000007.vlog", false, vlogMapping{}},
		{"7f0000000000-7f0010000000 rw-p 00000000 00:00 0", false, vlogMapping{}},
		{"zz-7f0010000000 r--s 00000000 103:02 1234 /data/d/000007.vlog", false, vlogMapping{}},
	} {
		m, ok := parseVlogMapping([]byte(c.line), "/data/d")
		if ok != c.ok || m != c.m {
			t.Errorf("%q: %+v %v, want %+v %v", c.line, m, ok, c.m, c.ok)
		}
	}
	if m, ok := parseVlogMapping([]byte("1000-2000 r--s 0 0:0 1 /data/d with space/000002.vlog"), "/data/d with space"); !ok || m.fid != 2 {
		t.Errorf("path with a space: %+v %v", m, ok)
	}
}
