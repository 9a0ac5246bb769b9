package streams_test

import (
	"context"
	"os"
	"os/signal"
	"time"

	"github.com/pubg1/pubg1/streams"
	"github.com/rs/zerolog"
)

// Counts clicks and their average price per user over 10 s windows, until
// interrupted; the results go to clicks-per-10s once per window.
func ExampleRun() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := streams.Run(ctx, streams.Config{
		Brokers: []string{"127.0.0.1:9092"},
		AppID:   "clicks-counter",
		Input:   "clicks",
		Output:  "clicks-per-10s",
		Key:     streams.JSONKey("user"), // nil: the record key
		Time:    streams.JSONTime("ts"),  // nil: the record timestamp
		Window:  streams.Tumbling(10 * time.Second),
		Aggs:    []streams.Agg{streams.Count(), streams.Avg("price")},
		Grace:   5 * time.Second,
		Logger:  zerolog.New(os.Stderr),
	})
	if err != nil {
		panic(err)
	}
}
