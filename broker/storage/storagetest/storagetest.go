// Package storagetest runs tests over every storage.Store implementation.
package storagetest

import (
	"testing"

	"github.com/pubg1/pubg1/broker/storage"
	"github.com/rs/zerolog"
)

// ForEach runs fn as a subtest over a Memory store and over a Badger store
// in a temporary directory. reopen returns a store over the same data: the
// same Memory, or the Badger directory reopened after closing the store it
// returned before. Stores are closed when the test ends.
func ForEach(t *testing.T, fn func(t *testing.T, reopen func() storage.Store)) {
	t.Run("memory", func(t *testing.T) {
		m := storage.NewMemory()
		t.Cleanup(func() { m.Close() })
		fn(t, func() storage.Store { return m })
	})
	t.Run("badger", func(t *testing.T) {
		dir := t.TempDir()
		var cur storage.Store
		t.Cleanup(func() {
			if cur != nil {
				cur.Close()
			}
		})
		fn(t, func() storage.Store {
			if cur != nil {
				cur.Close()
			}
			s, err := storage.OpenBadger(storage.DefaultBadgerOptions(dir, zerolog.Nop()))
			if err != nil {
				t.Fatal(err)
			}
			cur = s
			return s
		})
	})
}
