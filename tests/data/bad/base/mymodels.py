def echo(prompt):
    return prompt.split()[-1]
