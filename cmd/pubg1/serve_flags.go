package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// check validates the serve flags before anything is created, naming each
// flag as the user typed it. broker.Config.Validate checks the same
// settings again under their own names, for embedders.
func (s *serveCmd) check() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.ID < 0 {
		bad("--id %d must not be negative", s.ID)
	}
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		bad("--listen %q is not HOST:PORT", s.Listen)
	}
	if s.Advertise != "" {
		if _, _, err := net.SplitHostPort(s.Advertise); err != nil {
			bad("--advertise %q is not HOST:PORT", s.Advertise)
		}
	}
	if s.DebugListen != "" {
		if _, _, err := net.SplitHostPort(s.DebugListen); err != nil {
			bad("--debug-listen %q is not HOST:PORT", s.DebugListen)
		}
	}
	if s.Data == "" {
		bad("--data must not be empty")
	} else if fi, err := os.Stat(s.Data); err == nil && !fi.IsDir() {
		bad("--data %s is not a directory", s.Data)
	}
	if s.MaxRequestBytes < 1024 {
		bad("--max-request-bytes %d is below 1024", s.MaxRequestBytes)
	}
	if s.NumPartitions < 1 {
		bad("--num-partitions %d must be at least 1", s.NumPartitions)
	}
	if s.DiskReserve < -1 {
		bad("--disk-free-reserve %d must be -1 (none) or a number of bytes", s.DiskReserve)
	}
	if s.MaxFetchSessions < 0 {
		bad("--max-fetch-sessions %d must not be negative", s.MaxFetchSessions)
	}
	if s.MessageMaxBytes < 0 {
		bad("--message-max-bytes %d must not be negative", s.MessageMaxBytes)
	}
	if s.OffsetsTopicPartitions < 1 {
		bad("--offsets-topic-partitions %d must be at least 1", s.OffsetsTopicPartitions)
	}
	if s.TxnStatePartitions < 1 {
		bad("--transaction-state-partitions %d must be at least 1", s.TxnStatePartitions)
	}
	if s.GroupMinSessionTimeout < 0 {
		bad("--group-min-session-timeout %v must not be negative", s.GroupMinSessionTimeout)
	}
	if s.GroupMaxSessionTimeout < s.GroupMinSessionTimeout {
		bad("--group-max-session-timeout %v is below --group-min-session-timeout %v", s.GroupMaxSessionTimeout, s.GroupMinSessionTimeout)
	}
	if s.GroupInitialRebalanceDelay < 0 {
		bad("--group-initial-rebalance-delay %v must not be negative", s.GroupInitialRebalanceDelay)
	}
	if s.LeaderImbalancePercent < 0 || s.LeaderImbalancePercent > 100 {
		bad("--leader-imbalance-per-broker-percentage %d must be between 0 and 100", s.LeaderImbalancePercent)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--retention-check-interval", s.RetentionCheck},
		{"--log-cleaner-backoff", s.CleanerBackoff},
		{"--offsets-retention", s.OffsetsRetention},
		{"--offsets-retention-check-interval", s.OffsetsRetentionCheck},
		{"--leader-imbalance-check-interval", s.LeaderImbalanceCheck},
		{"--transaction-max-timeout", s.TxnMaxTimeout},
		{"--transactional-id-expiration", s.TxnIDExpiration},
		{"--transaction-abort-check-interval", s.TxnAbortCheckInterval},
	} {
		if d.v <= 0 {
			bad("%s %v must be positive", d.flag, d.v)
		}
	}
	return errors.Join(errs...)
}

// listenCause is why binding an address failed, without the address
// repeated: "address already in use".
func listenCause(err error) error {
	if oe, ok := errors.AsType[*net.OpError](err); ok {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err
		}
		return oe.Err
	}
	return err
}
