r"""The equivalence table: (gold, response answer, expected) by category.

Written for verirl. The response answer is placed in `\boxed{}` by the test
unless the category is about extraction. Both matches and must-not-matches.
"""

INTEGERS = [
    ("42", "42", True), ("42", "042", True), ("42", "43", False), ("-7", "-7", True), ("-7", "7", False),
    ("0", "0", True), ("0", "-0", True), ("100", "100.0", True), ("100", "100.00", True), ("100", "1000", False),
    ("123456789", "123456789", True), ("123456789", "123456788", False), ("5", "+5", True), ("12", "12.", True),
    ("1000000", "10^6", True), ("1000000", "10^{6}", True), ("-3", "- 3", True), ("8", "2^3", True),
    ("16", "4^2", True), ("9", "3*3", True), ("6", "2 \\cdot 3", True), ("6", "2 \\times 3", True),
]

DECIMALS = [
    ("\\frac{1}{3}", "0.\\overline{3}", True), ("\\frac{1}{6}", "0.1\\overline{6}", True), ("\\frac{1}{3}", "0.\\overline{33}", True),
    ("\\frac{1}{3}", "0.\\overline{6}", False), ("x_1+x_2", "x_2+x_1", True), ("x_1+x_2", "x_1+x_3", False),
    ("0.5", "0.5", True), ("0.5", ".5", True), ("0.5", "0.50", True), ("0.5", "0.51", False), ("3.75", "3.750", True),
    ("1.25", "1.250000", True), ("2.5", "2.4999", False), ("326.5", "326.5", True), ("326.5", "326.6", False),
    ("0.1", "0.10000000000000001", False), ("3.14159265358979", "3.14159265358978", False),
    ("1000", "1000.0001", False), ("1000", "999.9999", False), ("0.001", "0.0010", True), ("0.0001", "0.0009", False),
    ("1.5", "\\frac{3}{2}", True), ("0.25", "\\frac14", True), ("0.2", "1/5", True), ("-0.75", "-\\frac{3}{4}", True),
]

THOUSANDS = [
    ("7425000", "7,425,000", True), ("7,425,000", "7425000", True), ("10000", "10{,}000", True),
    ("1000", "1 000", True), ("11111111100", "11,\\! 111,\\! 111,\\! 100", True), ("58,500", "58500", True),
    ("58,500", "58,501", False), ("1234567", "1,234,567", True), ("1234567", "1,234,568", False),
    ("2125", "2,125", True), ("10000", "10\\,000", True), ("26000", "26,000", True), ("1000000", "1,000,000.00", True),
]

FRACTIONS = [
    ("\\frac{1}{2}", "\\frac{1}{2}", True), ("\\frac{1}{2}", "\\dfrac{1}{2}", True), ("\\frac{1}{2}", "\\tfrac12", True),
    ("\\frac{1}{2}", "1/2", True), ("\\frac{1}{2}", "2/4", True), ("\\frac{1}{2}", "\\frac{2}{4}", True),
    ("\\frac{1}{2}", "\\frac{1}{3}", False), ("\\frac{9}{256}", "\\frac{9}{256}", True), ("\\frac{9}{256}", "9/256", True),
    ("\\frac{8}{15}", "\\frac{15}{8}", False), ("\\frac{7}{2}", "3.5", True), ("\\frac{7}{2}", "3\\frac{1}{2}", True),
    ("3\\frac{1}{2}", "\\frac{7}{2}", True), ("2\\frac{3}{4}", "2.75", True), ("2\\frac{3}{4}", "\\frac{11}{4}", True),
    ("\\frac{-3}{4}", "-\\frac{3}{4}", True), ("-\\frac{3}{4}", "\\frac{3}{-4}", True), ("\\frac{3}{4}", "-\\frac{3}{4}", False),
    ("\\frac{33}{100}", "0.33", True), ("\\dfrac{33}{100}", "\\frac{33}{100}", True), ("\\frac{1}{3}", "0.3333", False),
    ("\\frac{2}{3}", "0.67", False), ("\\frac{2}{3}", "0.666667", True), ("\\frac{2}{3}", "0.6666666667", True),
    ("\\frac{1}{7}", "0.142857142857", True), ("\\frac{1}{7}", "0.142857", True), ("\\frac{1}{3}", "0.333333", True),
    ("\\frac{1}{3}", "0.333334", False), ("\\frac{1}{7}", "0.142858", False), ("\\frac{a}{b}", "a/b", True), ("\\frac{1}{x+1}", "(x+1)^{-1}", True),
    ("\\frac{10}{3}", "3\\frac{1}{3}", True), ("\\frac{5}{4}", "1\\frac{1}{4}", True), ("\\frac{5}{4}", "1\\frac{1}{2}", False),
]

PERCENT = [
    ("50\\%", "50\\%", True), ("50\\%", "50", True), ("50\\%", "0.5", True), ("50", "50\\%", True),
    ("50\\%", "\\frac{1}{2}", True), ("50\\%", "5", False), ("12.5\\%", "12.5", True), ("12.5\\%", "0.125", True),
    ("25", "25 percent", True), ("20\\%", "20%", True), ("20\\%", "25\\%", False), ("30\\%", "0.35", False),
]

SCIENTIFIC = [
    ("5000000", "5 million", True), ("2500", "2.5 thousand", True), ("5000000", "5 billion", False),
    ("1.5 \\times 10^{3}", "1500", True), ("1500", "1.5\\times10^3", True), ("6.02 \\times 10^{23}", "6.02\\cdot10^{23}", True),
    ("6.02 \\times 10^{23}", "6.03 \\times 10^{23}", False), ("10^{-20}", "10^{-21}", False), ("2 \\times 10^{-3}", "0.002", True),
    ("3 \\times 10^{8}", "300000000", True), ("3 \\times 10^{8}", "30000000", False), ("1.2e3", "1200", True), ("2.5e-3", "0.0025", True), ("2.5e-3", "0.025", False),
]

ROOTS = [
    ("\\sqrt{2}", "\\sqrt{2}", True), ("\\sqrt{2}", "\\sqrt2", True), ("\\sqrt{2}", "2^{1/2}", True),
    ("\\sqrt{2}", "1.41421356", True), ("\\sqrt{2}", "1.414", False), ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("2\\sqrt{113}", "\\sqrt{452}", True), ("\\sqrt{51}", "\\sqrt{52}", False), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ("\\sqrt[3]{8}", "2", True), ("\\sqrt[3]{2}", "2^{1/3}", True), ("1+2\\sqrt{3}", "2\\sqrt{3}+1", True),
    ("1+2\\sqrt{3}", "1+3\\sqrt{2}", False), ("\\sqrt{66}", "\\sqrt{66}", True), ("3\\sqrt{3}", "\\sqrt{27}", True),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True), ("\\sqrt{3}/2", "\\frac{\\sqrt{3}}{2}", True),
    ("\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}", True), ("\\sqrt{2}", "\\sqrt{3}", False), ("4\\sqrt{2}", "\\sqrt{32}", True),
]

CONSTANTS = [
    ("\\pi", "\\pi", True), ("2\\pi", "2 \\pi", True), ("\\frac{\\pi}{2}", "\\pi/2", True), ("\\frac{\\pi}{2}", "1.5707963", True),
    ("\\pi", "3.14", False), ("\\pi", "3.14159265", True), ("\\frac{\\pi}{3}", "\\frac{\\pi}{6}", False), ("e", "e", True),
    ("e^2", "e^{2}", True), ("e", "2.718281828", True), ("e", "2.71", False), ("\\pi r^2", "r^2\\pi", True),
    ("4\\pi", "4 \\cdot \\pi", True), ("\\frac{4}{3}\\pi", "\\frac{4\\pi}{3}", True), ("6\\pi", "6\\pi^2", False),
    ("e^{i\\pi}", "-1", True), ("\\ln 2", "\\log 2", True), ("\\log_2 8", "3", True), ("\\ln(e^3)", "3", True),
]

DEGREES = [
    ("90^\\circ", "90", True), ("90", "90^\\circ", True), ("90^\\circ", "90^{\\circ}", True), ("90^\\circ", "90°", True),
    ("90^\\circ", "\\frac{\\pi}{2}", True), ("30^\\circ", "\\frac{\\pi}{6}", True), ("30^\\circ", "\\frac{\\pi}{3}", False),
    ("45", "45 degrees", True), ("60^\\circ", "120^\\circ", False), ("\\frac{\\pi}{6}", "30^\\circ", True),
]

UNITS_TEXT = [
    ("5.4 \\text{ cents}", "5.4", True), ("5.4", "5.4 \\text{ cents}", True), ("12", "12 \\text{ cm}", True),
    ("12", "12 cm", True), ("12", "12\\text{cm}^2", True), ("\\$12.50", "12.50", True), ("12.50", "\\$12.5", True),
    ("18", "18 \\text{ dollars}", True), ("18", "\\$18", True), ("30", "30 \\text{ minutes}", True), ("7", "7 \\mbox{ days}", True),
    ("\\text{Monday}", "monday", True), ("\\text{Monday}", "\\text{Tuesday}", False), ("\\text{yes}", "Yes", True),
    ("\\text{no}", "\\text{yes}", False), ("\\text{(C)}", "C", True), ("10", "10 \\text{ inches}", True),
    ("10 \\text{ inches}", "12 \\text{ inches}", False), ("2 \\text{ hours}", "2", True), ("3", "3 people", True),
    ("\\text{even}", "\\textbf{even}", True), ("\\text{odd}", "even", False), ("4", "4\\text{ square units}", True),
]

EXPRESSIONS = [
    ("x^2+2x+1", "(x+1)^2", True), ("x^2+2x+1", "(x-1)^2", False), ("-13x+3", "3-13x", True), ("2k+2", "2(k+1)", True),
    ("2k+2", "2k+1", False), ("5r^5", "5r^{5}", True), ("5r^5", "5r^4", False), ("\\frac{x}{2}", "0.5x", True),
    ("a^2-b^2", "(a-b)(a+b)", True), ("a^2-b^2", "(a-b)^2", False), ("\\sin^2 x + \\cos^2 x", "1", True),
    ("x^3", "x\\cdot x^2", True), ("\\frac{x^2-1}{x-1}", "x+1", True), ("2x", "x+x", True), ("xy", "yx", True),
    ("x^{2}y", "yx^2", True), ("3x-2", "3x+2", False), ("\\frac{1}{2}x^2", "\\frac{x^2}{2}", True),
    ("(x+2)(x-3)", "x^2-x-6", True), ("(x+2)(x-3)", "x^2+x-6", False), ("|x|", "|x|", True), ("|x-1|", "|1-x|", True),
    ("2^{n+1}", "2\\cdot2^n", True), ("n(n+1)/2", "\\frac{n^2+n}{2}", True), ("\\binom{5}{2}", "10", True),
    ("\\binom{n}{2}", "\\frac{n(n-1)}{2}", True), ("5!", "120", True), ("6!", "720", True), ("6!", "120", False),
    ("\\frac{1}{3000!}", "\\frac{1}{3001!}", False), ("\\frac{1}{3000!}", "\\frac{1}{3000!}", True),
    ("\\sin x", "\\sin(x)", True), ("\\cos(2x)", "\\cos^2 x - \\sin^2 x", True), ("\\tan x", "\\frac{\\sin x}{\\cos x}", True),
    ("e^{x}", "\\exp(x)", True), ("\\ln(xy)", "\\ln x + \\ln y", False), ("x^{-1}", "\\frac{1}{x}", True),
    ("\\lfloor 3.7 \\rfloor", "3", True), ("\\lceil 3.2 \\rceil", "4", True), ("\\frac{3x+1}{2}", "1.5x+0.5", True),
    ("2\\sqrt{x}", "\\sqrt{4x}", True), ("x^2", "x^3", False), ("t^2+1", "1+t^2", True),
]

EQUATIONS = [
    ("20", "4 \\times 5 = 20", True), ("20", "4 \\times 5 = 21", False), ("21", "4 \\times 5 = 21", False),
    ("20", "2 \\cdot 10 = 4 \\cdot 5 = 20", True),
    ("x=3", "3", True), ("3", "x=3", True), ("x=3", "x = 3", True), ("x=3", "3=x", True), ("x=3", "4", False),
    ("y=2x+1", "2x+1", True), ("y=2x+1", "y=1+2x", True), ("y=2x+1", "y=2x-1", False), ("k=5", "5", True),
    ("y = -\\frac{1}{2}x + 3", "y=-0.5x+3", True), ("2x+2y=4", "x+y=2", True), ("x+y=2", "x-y=2", False),
    ("a=2", "a=3", False), ("x = 7", "x=7.0", True), ("y=x^2", "x^2", True), ("f(x)=x^2", "x^2", True), ("f(x)=x^2", "x^3", False),
    ("x_1 = 2", "2", True), ("a_{n} = 2^n", "2^n", True), ("x \\approx 3.14", "x = 3.14", True), ("2x+2y=4", "2", False),
]

INEQUALITIES = [
    ("x>3", "x>3", True), ("x>3", "3<x", True), ("x>3", "(3,\\infty)", True), ("x \\ge 3", "[3,\\infty)", True),
    ("x \\ge 3", "(3,\\infty)", False), ("x<5", "(-\\infty,5)", True), ("x \\le 5", "(-\\infty, 5]", True),
    ("1<x<2", "(1,2)", True), ("1 \\le x < 2", "[1,2)", True), ("1 \\le x < 2", "[1,2]", False), ("x>3", "x<3", False),
    ("x>3", "x \\geq 3", False), ("-2 \\le x \\le 5", "[-2,5]", True), ("x \\leq 2", "x \\le 2", True),
]

INTERVALS = [
    ("x \\neq 1", "(-\\infty,1)\\cup(1,\\infty)", True), ("x \\ne 1", "(-\\infty,1]\\cup(1,\\infty)", False),
    ("[1,2]", "[1,2]", True), ("[1,2]", "(1,2)", False), ("(1,2)", "[1,2]", False), ("[1,2)", "[1,2)", True),
    ("[1,2)", "(1,2]", False), ("(-\\infty, 0)", "(-\\infty,0)", True), ("(-\\infty, 0)", "(-\\infty,0]", False),
    ("\\left[ \\frac{1}{2}, 3 \\right)", "[0.5, 3)", True), ("[2/7, 3/2)", "[\\frac{2}{7}, \\frac{3}{2})", True),
    ("(-\\infty,-2)\\cup(3,\\infty)", "(3,\\infty)\\cup(-\\infty,-2)", True), ("(-\\infty,-2)\\cup(3,\\infty)", "(-\\infty,-2]\\cup(3,\\infty)", False),
    ("(0, \\infty)", "(0,\\infty)", True), ("[0,1]", "[0,1.0]", True), ("[-1, 1]", "[-1,2]", False),
    ("(-\\infty, \\infty)", "(-\\infty,\\infty)", True), ("x \\in [1,2]", "[1,2]", True),
]

SETS = [
    ("\\{1,2\\}", "\\{2,1\\}", True), ("\\{1,2\\}", "\\{1,2,3\\}", False), ("\\{1,2,3\\}", "\\{3,2,1\\}", True),
    ("\\{1,2\\}", "\\{1,3\\}", False), ("\\emptyset", "\\varnothing", True), ("\\emptyset", "\\{\\}", True),
    ("\\{\\frac{1}{2}, 2\\}", "\\{2, 0.5\\}", True), ("\\{-1, 1\\}", "\\{1,-1\\}", True), ("\\{a, b\\}", "\\{b, a\\}", True),
]

TUPLES = [
    ("(1,2)", "1, 2", True), ("(3, -1)", "3, -1", True),
    ("(1,2)", "(1,2)", True), ("(1,2)", "(2,1)", False), ("(1,-16,-4,43)", "(1, -16, -4, 43)", True),
    ("(1,-16,-4,43)", "(1,-16,-4,42)", False), ("(1,-16,-4,43)", "(1,-16,-4)", False),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", True), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{3})", False),
    ("(2, -3)", "(2,-3)", True), ("(0.5, 1)", "(\\frac12, 1)", True), ("(1,2,3)", "(1,2,3)", True), ("(1,2,3)", "(3,2,1)", False),
    ("(\\sqrt{2}, 1)", "(\\sqrt{2}, 1)", True), ("(6\\sqrt{2}, \\frac{\\pi}{4})", "(\\sqrt{72}, 0.25\\pi)", True),
]

MATRICES = [
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1, 2)", True), ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(2, 1)", False),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "[1, 2]", False), ("\\langle 1, 2 \\rangle", "(1,2)", True),
    ("\\langle 1, 2 \\rangle", "\\langle 2, 1 \\rangle", False),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", True),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", False),
    ("\\begin{pmatrix} 16/49 \\\\ 48/49 \\\\ 24/49 \\end{pmatrix}", "\\begin{pmatrix} \\frac{16}{49} \\\\ \\frac{48}{49} \\\\ \\frac{24}{49} \\end{pmatrix}", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\\\ 3 \\end{pmatrix}", False),
    ("\\begin{pmatrix} 0.5 & 0 \\\\ 0 & 1 \\end{pmatrix}", "\\begin{pmatrix} \\frac12 & 0 \\\\ 0 & 1 \\end{pmatrix}", True),
    ("\\begin{pmatrix} x & 1 \\end{pmatrix}", "\\begin{pmatrix} x & 2 \\end{pmatrix}", False),
]

SEVERAL = [
    ("1, 2", "2, 1", True), ("1, 2", "1, 2", True), ("1, 2", "1", False), ("1, 2", "1, 2, 3", False),
    ("-2, 3", "3, -2", True), ("-2, 3", "3 \\text{ and } -2", True), ("x=1, x=2", "x=2, x=1", True),
    ("2, 4", "2 and 4", True), ("\\frac{1}{2}, 3", "3, 0.5", True), ("1, 2", "1, 3", False), ("5", "5, 5", False),
]

COMPLEX = [
    ("2+3i", "3i+2", True), ("2+3i", "2-3i", False), ("-2 + 7i", "-2+7i", True), ("1+274i", "1 + 274 i", True),
    ("i", "\\sqrt{-1}", True), ("3i", "3 i", True), ("\\frac{1}{2}+\\frac{\\sqrt{3}}{2}i", "0.5+\\frac{\\sqrt3}{2}i", True),
    ("1-i", "1+i", False), ("(1+i)^2", "2i", True), ("-1", "i^2", True),
]

CHOICES = [
    ("B", "\\mathbf{(B)}", True), ("B", "{B}", True),
    ("A", "A", True), ("A", "(A)", True), ("A", "B", False), ("(C)", "C", True), ("C", "\\text{(C)}", True),
    ("C", "c", True), ("D", "(D) 12", True), ("D", "(B) 12", False), ("E", "\\textbf{(E)}", True), ("B", "A", False),
]

TEXT = [
    ("\\text{Monday}", "\\text{Monday}", True), ("\\text{east}", "East", True), ("\\text{east}", "west", False),
    ("\\text{Devon}", "devon", True), ("\\text{impossible}", "\\text{possible}", False),
]

BASES = [
    ("41_7", "41_7", True), ("41_7", "41_8", False), ("40_9", "40_{9}", True), ("1011_2", "1011_{2}", True),
    ("1011_2", "1010_2", False), ("40_9", "40", True), ("1112_4", "1112_3", False),
]

PRECISION = [  # (gold, response, expected, precision)
    ("(1,\\infty)", "(1,5)", False, 2), ("\\infty", "5", False, 2), ("\\infty", "\\infty", True, 2),
    ("\\frac{2}{3}", "0.67", True, 2), ("\\frac{2}{3}", "0.66", False, 2), ("\\frac{2}{3}", "0.667", True, 3),
    ("[0.29, 1.5)", "[\\frac{2}{7}, \\frac{3}{2})", True, 2), ("[0.29, 1.5]", "[\\frac{2}{7}, \\frac{3}{2})", False, 2),
    ("\\pi", "3.14", True, 2), ("\\pi", "3.15", False, 2), ("\\sqrt{2}", "1.414", True, 3), ("1.005", "1.00", False, 2),
    ("0.125", "0.13", True, 2), ("100", "100.004", True, 2), ("100", "100.006", False, 2),
]

EXTRACTION = [  # (gold, full response, expected): the response is not wrapped
    ("42", "We compute 6*7 = 42.\nThe final answer is \\boxed{42}.", True),
    ("42", "First \\boxed{41}, then correcting: \\boxed{42}", True),
    ("42", "\\boxed{42} was a guess; in fact \\boxed{43}.", False),
    ("42", "The answer is 42.", True), ("42", "The answer is: $42$", True), ("42", "**Answer:** 42", True),
    ("42", "Thus we get 40 + 2\n#### 42", True), ("42", "So 6 times 7 gives 42", True),
    ("42", "I am not sure.", None), ("\\frac{1}{2}", "\\frac{1}{2}", True), ("\\frac{1}{2}", "$\\frac{2}{4}$", True),
    ("x^2+1", "x^2+1", True), ("\\text{Monday}", "Monday", True), ("5", "5 apples", True), ("(1,2)", "\\left(1,2\\right)", True), ("18", "Janet sells 16 - 3 - 4 = 9 eggs, so 9 * 2 = $18 a day.\n#### 18", True),
    ("\\frac{1}{2}", "So p = \\boxed{\\frac{1}{2}}", True), ("\\frac{1}{2}", "\\fbox{1/2}", True),
    ("5", "The result is \\boxed 5.", True), ("(1,2)", "The point is $\\boxed{(1,2)}$.", True),
    ("1,234", "The total is 1,234 dollars.", True), ("-3", "The value drops to -3", True),
    ("\\frac{\\sqrt{3}}{2}", "$\\boxed{\\frac{\\sqrt{3}}{2}}$", True), ("3", "\\boxed{\\text{3}}", True),
    ("9", "The answer is $\\boxed{9}$.", True), ("2", "Answer: 2 apples.", True),
]

EXTRACTION += [  # whole responses with harder answers

 ("2, 3", "So \\boxed{2} and \\boxed{3}.", True),
 ("2", "So \\boxed{2} and \\boxed{3}.", False),
 ("(-\\infty,\\infty)", "\\boxed{\\mathbb{R}}", True),
 ("\\$1,000", "\\boxed{1000}", True),
 ("y = \\frac{3}{2}x - 1", "\\boxed{y = 1.5x - 1}", True),
 ("\\frac{-1\\pm\\sqrt{5}}{2}", "\\boxed{\\frac{-1+\\sqrt{5}}{2}, \\frac{-1-\\sqrt{5}}{2}}", True),
 ("x=\\frac{-1\\pm\\sqrt{5}}{2}", "\\boxed{\\frac{-1\\pm\\sqrt{5}}{2}}", True),
 ("1 \\text{ or } 2", "\\boxed{2, 1}", True),
 ("x \\in [2, 3)", "\\boxed{[2,3)}", True),
 ("\\textbf{(A) }5", "\\boxed{A}", True),
 ("3^{10}", "\\boxed{59049}", True),
 ("10\\sqrt{2}", "\\boxed{\\sqrt{200}}", True),
 ("\\sqrt{3}i", "\\boxed{i\\sqrt{3}}", True),
 ("\\frac{1}{2}\\text{ inch}", "\\boxed{0.5}", True),
 ("f^{-1}(x) = 2x+1", "\\boxed{2x+1}", True),
 ("\\{x \\mid x > 0\\}", "\\boxed{(0,\\infty)}", True),
 ("6", "\\boxed{6.00}", True),
 ("-\\frac{1}{2}", "\\boxed{-0.5}", True),
 ("\\frac{1}{4}", "\\boxed{25\\%}", True),
 ("2^{-1}", "\\boxed{0.5}", True),
 ("\\dfrac{1}{2}", "The answer is \\(\\frac12\\).", True),
 ("12", "The final answer is: \\[ \\boxed{12} \\]", True),
 ("5", "**Final Answer**\n\\[\\boxed{5}\\]", True),
 ("\\text{B}", "Answer: (B)", True),
 ("24", "The answer is 24 cm^2.", True),
 ("x^2 + 2x", "\\boxed{x(x+2)}", True),
 ("\\pi/4", "\\boxed{45^\\circ}", True),
 ("1:2", "\\boxed{1:2}", True),
 ("0.5", "\\boxed{\\frac{1}{2}}", True),
 ("(1,2) \\cup (3,4)", "\\boxed{(1,2)\\cup(3,4)}", True),
 ("\\frac{1}{2}", "\\boxed{\\frac{1}{2}}\\%", True),
]

EXTRACTION += [  # GSM8K-style prose
 ("5000000", "The company earned $5 million.", True), ("5000000", "\\boxed{\\$5 \\text{ million}}", True),
 ("5", "The company earned $5 million.", False),

 ("1200", "She earns 1,200 dollars.\nThe answer is $1,200.00.", True),
 ("5", "Final Answer: The final answer is $5$. I hope it is correct.", True),
 ("18", "Janet has 16 eggs... She makes 9 * $2 = $<<9*2=18>>18 every day.\n#### 18", True),
 ("3", "So the answer is 3 apples, since 5 - 2 = 3.", True),
 ("70000", "He made a profit of $70,000.", True),
 ("0.5", "The probability is 1/2.", True),
 ("-4", "The temperature dropped to -4 degrees.", True),
 ("25", "25% of the students...", True),
 ("160", "The answer is: 160", True),
 ("10", "Therefore, the answer is \\(10\\).", True),
 ("7", "The answer is 7.\n\nLet me double check: 3 + 4 = 7. Yes.", True),
 ("14", "Answer: $\\$14$", True),
 ("600", "So in total 600 minutes, i.e. 10 hours.", False),
]

GOLD_SOLUTIONS = [  # (gold written as a full solution, response answer, expected)
    ("We have $r = 3$, so the answer is $\\boxed{3}$.", "3", True),
    ("Adding, we get $\\boxed{\\frac{9}{4}}$.", "2.25", True),
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72", True),
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "24", False),
    ("So the area is \\boxed{12\\pi}.", "12\\pi", True),
]

MUST_NOT_MATCH = [  # pitfalls other graders fall into
    ("1.0000001", "1.0000002", False), ("123456.789", "123456.788", False), ("2^{100}", "2^{100}+1", False),
    ("10^{10^{10}}", "10^{10^{10}}+1", False), ("10^{100}", "10^{101}", False), ("\\frac{1}{10^{30}}", "\\frac{1}{10^{31}}", False),
    ("x+1", "x+1.0000001", False), ("\\sqrt{2}", "1.4142", False), ("e^{-50}", "0", False), ("0", "10^{-12}", False),
    ("1, 2", "12", False), ("12", "1, 2", False), ("(1,2)", "2, 1", False), ("[1,2]", "1, 2", False), ("[1,2]", "\\{1,2\\}", False),
    ("\\{1,2\\}", "(1,2)", False), ("x=3", "y=3", False), ("3", "3x", False), ("\\infty", "-\\infty", False),
    ("2\\pi", "\\pi", False), ("\\frac{\\pi}{4}", "45", False), ("1000", "1,000,000", False), ("7", "7!", False),
    ("0.5", "5", False), ("50\\%", "0.05", False), ("i", "-i", False), ("\\sqrt{-4}", "2", False), ("(1,2]", "(1,2)", False),
    ("x^2", "2x", False), ("\\frac{1}{2}", "\\frac{1}{2}x", False), ("\\text{Tuesday}", "\\text{Thursday}", False),
    ("1011_2", "11", False), ("\\frac{1}{3001!}", "0", False), ("-1", "1", False), ("\\frac{3}{2}", "\\frac{2}{3}", False),
]

CATEGORIES = {
    "integers": INTEGERS, "decimals": DECIMALS, "thousands": THOUSANDS, "fractions": FRACTIONS, "percent": PERCENT,
    "scientific": SCIENTIFIC, "roots": ROOTS, "constants": CONSTANTS, "degrees": DEGREES, "units_text": UNITS_TEXT,
    "expressions": EXPRESSIONS, "equations": EQUATIONS, "inequalities": INEQUALITIES, "intervals": INTERVALS,
    "sets": SETS, "tuples": TUPLES, "matrices": MATRICES, "several": SEVERAL, "complex": COMPLEX, "choices": CHOICES,
    "text": TEXT, "bases": BASES, "must_not_match": MUST_NOT_MATCH,
}
