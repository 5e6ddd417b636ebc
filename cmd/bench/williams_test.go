package main

import (
	"slices"
	"testing"
)

// An interleaved run is fair only if every load comes in every place of a turn, and right after every other
// load, equally often: what a slice inherits from the one before it must fall on each alike.
func TestWilliamsSquaresAreBalanced(t *testing.T) {
	for n := 1; n <= 7; n++ {
		square := williams(n)
		places := map[[2]int]int{}  // (load, place) -> times
		follows := map[[2]int]int{} // (before, after) -> times
		for _, order := range square {
			if sorted := slices.Sorted(slices.Values(order)); !slices.Equal(sorted, identity(n)) {
				t.Fatalf("n=%d: order %v is not a permutation of 0..%d", n, order, n-1)
			}
			for place, load := range order {
				places[[2]int{load, place}]++
				if place > 0 {
					follows[[2]int{order[place-1], load}]++
				}
			}
		}
		perPlace := len(square) / n
		for load := range n {
			for place := range n {
				if got := places[[2]int{load, place}]; got != perPlace {
					t.Errorf("n=%d: load %d comes in place %d %d times, want %d (square %v)", n, load, place, got, perPlace, square)
				}
			}
		}
		if n < 2 {
			continue
		}
		perPair := (len(square) * (n - 1)) / (n * (n - 1))
		for before := range n {
			for after := range n {
				want := perPair
				if before == after {
					want = 0
				}
				if got := follows[[2]int{before, after}]; got != want {
					t.Errorf("n=%d: %d follows %d %d times, want %d (square %v)", n, after, before, got, want, square)
				}
			}
		}
	}
}

func identity(n int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	return ids
}
