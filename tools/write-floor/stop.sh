#!/bin/bash
# Stops the members deploy.sh started in DIR (by their pid files).
D=$1
for f in $D/*.pid; do kill $(cat $f) 2>/dev/null; done
