/**
 * Imported first by every bench process that runs under tsx, for its side
 * effect: measure the library as shipped, compiled JavaScript without the
 * source-map rewriting of stack traces that tsx turns on (it makes every
 * formatted stack trace parse source maps, a cost no user of the package
 * pays unless they opt in with --enable-source-maps).
 */
process.setSourceMapsEnabled(false)
