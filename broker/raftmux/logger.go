package raftmux

import (
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// Logger returns an hclog.Logger, the kind hashicorp/raft logs to, that
// writes to log. A broker runs many Raft groups, each logging its own
// elections and retries, so only Raft's errors that are not about reaching
// a peer are warnings; its other errors, warnings and infos are debug lines
// and its debug and trace lines trace.
func Logger(log zerolog.Logger) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	if log.GetLevel() <= zerolog.WarnLevel {
		l.RegisterSink(&sink{log})
	}
	return l
}

type sink struct{ log zerolog.Logger }

// Accept implements hclog.SinkAdapter.
func (s *sink) Accept(name string, level hclog.Level, msg string, args ...any) {
	zl := zerolog.TraceLevel
	switch {
	case level == hclog.Error && !aboutPeer(msg, args):
		zl = zerolog.WarnLevel
	case level >= hclog.Info:
		zl = zerolog.DebugLevel
	}
	e := s.log.WithLevel(zl)
	if e == nil {
		return
	}
	if name != "" {
		e = e.Str("raft", name)
	}
	fields := make([]any, 0, len(args))
	for i := 0; i+1 < len(args); i += 2 {
		k, v := fmt.Sprint(args[i]), args[i+1]
		switch k {
		case zerolog.TimestampFieldName, zerolog.LevelFieldName, zerolog.MessageFieldName:
			k = "raft_" + k // Raft's "time" is a duration, not the line's time
		}
		if f, ok := v.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				v = fmt.Sprintf(format, f[1:]...)
			}
		}
		fields = append(fields, k, v)
	}
	e.Fields(fields).Msg(msg)
}

// aboutPeer reports whether a Raft log line is about reaching a peer (or a
// stream from one): while a broker is down or stopping, every group logs
// these.
func aboutPeer(msg string, args []any) bool {
	switch msg {
	case "failed to accept connection", "failed to decode incoming command", "failed to flush response":
		return true
	}
	for i := 0; i < len(args); i += 2 {
		switch args[i] {
		case "peer", "target", "server-id":
			return true
		}
	}
	return false
}
