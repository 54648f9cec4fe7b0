package sessionctl

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
)

// Confirm asks a person a yes-or-no question and reports the answer.
type Confirm func(ctx context.Context, question string) (bool, error)

// Prompt returns a Confirm that writes the question to w and reads the answer, a
// line, from r: "y" or "yes" (in any case) is yes; anything else, the end of the
// input included, is no. When ctx ends first, the answer is ctx's error (the read
// itself cannot be interrupted and goes on until r gives a line or ends).
func Prompt(r io.Reader, w io.Writer) Confirm {
	return func(ctx context.Context, question string) (bool, error) {
		fmt.Fprintf(w, "%s [y/N] ", question)
		answer := make(chan string, 1)
		go func() {
			line, _ := bufio.NewReader(r).ReadString('\n')
			answer <- line
		}()
		select {
		case line := <-answer:
			switch strings.ToLower(strings.TrimSpace(line)) {
			case "y", "yes":
				return true, nil
			}
			if !strings.HasSuffix(line, "\n") {
				fmt.Fprintln(w) // the input ended: end the question's line
			}
			return false, nil
		case <-ctx.Done():
			fmt.Fprintln(w)
			return false, ctx.Err()
		}
	}
}

// TerminalPrompt is Prompt on in when in is a terminal (a character device other
// than the null device), and nil otherwise: commands that need a confirmation
// then require Output.Yes, so a script never waits for an answer nobody gives.
func TerminalPrompt(in *os.File, w io.Writer) Confirm {
	if in == nil {
		return nil
	}
	fi, err := in.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return nil // a program started without input
	}
	return Prompt(in, w)
}
