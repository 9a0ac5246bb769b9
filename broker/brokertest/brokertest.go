// Package brokertest starts real brokers on loopback ports for tests.
package brokertest

import (
	"net"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/rs/zerolog"
)

// Option adjusts the configuration of a test broker.
type Option func(*broker.Config)

// WithDataDir keeps the broker's data in dir, so that a later broker can
// reopen it.
func WithDataDir(dir string) Option { return func(c *broker.Config) { c.DataDir = dir } }

// WithConfig applies an arbitrary change.
func WithConfig(f func(*broker.Config)) Option { return Option(f) }

// Run starts a broker on 127.0.0.1:0 with its data in a fresh temporary
// directory, waits until it accepts connections, and closes it when the
// test ends.
func Run(t testing.TB, opts ...Option) *broker.Broker {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	for _, o := range opts {
		o(&cfg)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	b, err := broker.New(cfg, log)
	if err != nil {
		t.Fatalf("brokertest: new broker: %v", err)
	}
	if err := b.Start(); err != nil {
		b.Close()
		t.Fatalf("brokertest: start broker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("brokertest: close broker: %v", err)
		}
	})
	WaitReady(t, b.Addr())
	return b
}

// WaitReady polls addr until it accepts a TCP connection.
func WaitReady(t testing.TB, addr string) {
	t.Helper()
	ktest.Eventually(t, addr+" to accept connections", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}
