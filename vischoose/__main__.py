"""python -m vischoose"""

from vischoose.cli import main

main()
