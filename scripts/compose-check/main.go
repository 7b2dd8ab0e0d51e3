// compose-check loads a Compose file the way Docker Compose v2 does, with compose-go (the
// Compose specification's reference loader): the .env file beside it, interpolation, schema
// validation, normalization and the consistency checks (every depends_on, network and
// volume a service names exists). Any error, and any warning the loader logs (an unset
// variable, an obsolete attribute), fails it.
//
//	compose-check [-json] compose/docker-compose.yml
//
// Exit status 0 when the file loads cleanly (with -json, the loaded project on stdout),
// 1 otherwise. Built and run by scripts/compose-check.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/sirupsen/logrus"
)

// warnings counts what the loader logs at warning level or above.
type warnings struct{ n int }

func (w *warnings) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (w *warnings) Fire(*logrus.Entry) error {
	w.n++
	return nil
}

func main() {
	asJSON := flag.Bool("json", false, "print the loaded project as JSON")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-json] COMPOSE_FILE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}

	w := &warnings{}
	logrus.AddHook(w)
	logrus.SetOutput(os.Stderr)

	// The options of `docker compose -f FILE`: the project directory is the file's, its
	// .env is read, the environment overrides it.
	opts, err := cli.NewProjectOptions([]string{flag.Arg(0)},
		cli.WithOsEnv,
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "compose-check: %v\n", err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "compose-check: %s: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
	if w.n > 0 {
		fmt.Fprintf(os.Stderr, "compose-check: %s: %d warning(s) above\n", flag.Arg(0), w.n)
		os.Exit(1)
	}
	if *asJSON {
		out, err := project.MarshalJSON()
		if err != nil {
			fmt.Fprintf(os.Stderr, "compose-check: %v\n", err)
			os.Exit(1)
		}
		os.Stdout.Write(append(out, '\n'))
	}
}
