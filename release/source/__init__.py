"""Reading the application: its git source at the recorded HEAD, its metadata, the
package indexes, and the hash-locked release environment resolved for the target."""
